//! The compute backends a command can run on, chosen at run time.

use std::panic;

use anyhow::bail;
use burn::backend::wgpu::WgpuDevice;
use burn::backend::Wgpu;
use burn::prelude::*;

/// Where tensors live and kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// CPU, through the ndarray crate.
    Ndarray,
    /// CPU, through Burn's pure-Rust `flex` backend (SIMD gemm, AVX-512 where the CPU has it):
    /// the default, the fastest CPU backend on every `cargo xtask bench` workload.
    Flex,
    /// GPU through wgpu (Vulkan, Metal, DX12); on a machine without a GPU, Vulkan on lavapipe.
    Wgpu,
    /// NVIDIA GPU through CUDA, with ember's CubeCL kernels. Needs a build with the `cuda`
    /// feature (`cargo build --release -p ember --features cuda`).
    Cuda,
}

/// The error for `--backend cuda` in a build without the `cuda` feature.
#[cfg(not(feature = "cuda"))]
pub fn no_cuda() -> anyhow::Error {
    anyhow::anyhow!(
        "--backend cuda: this ember was built without CUDA; build it with \
         `cargo build --release -p ember --features cuda` (needs an NVIDIA driver to run)"
    )
}

/// Runs `$body` with the type `$B` set to the backend `$kind` names and `$device` to its
/// default device; `--backend cuda` in a build without CUDA returns [`no_cuda`]'s error from
/// the calling function.
macro_rules! with_backend {
    ($kind:expr, |$B:ident, $device:ident| $body:expr) => {
        match $kind {
            $crate::backend::BackendKind::Ndarray => {
                type $B = burn::backend::NdArray;
                let $device = burn::backend::ndarray::NdArrayDevice::Cpu;
                $body
            }
            $crate::backend::BackendKind::Flex => {
                type $B = burn::backend::Flex;
                let $device = burn::backend::flex::FlexDevice;
                $body
            }
            $crate::backend::BackendKind::Wgpu => {
                type $B = burn::backend::Wgpu;
                let $device = burn::backend::wgpu::WgpuDevice::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::BackendKind::Cuda => {
                type $B = burn::backend::Cuda;
                let $device = burn::backend::cuda::CudaDevice::default();
                $body
            }
            #[cfg(not(feature = "cuda"))]
            $crate::backend::BackendKind::Cuda => return Err($crate::backend::no_cuda().into()),
        }
    };
}
pub(crate) use with_backend;

/// Checks that wgpu finds an adapter, turning Burn's panic (on a worker thread, with no error
/// value) into one line that says how to get one.
pub fn ensure_wgpu() -> anyhow::Result<()> {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let works = std::thread::spawn(|| {
        panic::catch_unwind(|| {
            let t = Tensor::<Wgpu, 1>::from_floats([1.0, 2.0], &WgpuDevice::default());
            t.sum().into_scalar()
        })
        .is_ok()
    })
    .join()
    .unwrap_or(false);
    panic::set_hook(previous);
    if !works {
        bail!(
            "--backend wgpu found no GPU or Vulkan device: install a Vulkan driver \
             (without a GPU: sudo apt-get install -y mesa-vulkan-drivers libvulkan1) or use the CPU (--backend flex, the default)"
        );
    }
    Ok(())
}
