//! Runtime choice of the widest x86-64 vector instructions for the elementwise loops.
//!
//! The workspace builds for baseline x86-64 (SSE2), where the gate loops vectorise four lanes
//! wide and `floor` is a libm call. [`multiversion!`] compiles one loop three times (AVX-512,
//! AVX2+FMA, baseline) and calls the best one the CPU has, detected once.

use std::sync::atomic::{AtomicU8, Ordering};

/// 0: not yet detected; 1: baseline; 3: AVX2 + FMA; 4: AVX-512 (F, VL) + AVX2 + FMA.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The x86-64 micro-architecture level the loops run at (1, 3 or 4).
pub fn level() -> u8 {
    match LEVEL.load(Ordering::Relaxed) {
        0 => {
            let found = detect();
            LEVEL.store(found, Ordering::Relaxed);
            found
        }
        known => known,
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> u8 {
    let v3 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    if v3 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
        4
    } else if v3 {
        3
    } else {
        1
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> u8 {
    1
}

/// Defines `fn name(args)` whose body is compiled for AVX-512, AVX2+FMA and the baseline, and
/// runs the widest one the CPU supports.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) {
                    body($($arg),*)
                }
                match $crate::simd::level() {
                    // SAFETY: `level` found these instructions on this CPU.
                    4 => return unsafe { v4($($arg),*) },
                    // SAFETY: as above.
                    3 => return unsafe { v3($($arg),*) },
                    _ => {}
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use multiversion;

/// Lanes per block of [`blocks`]: one AVX-512 register of `f32`.
const LANES: usize = 16;

/// Applies `f` element by element to equally long slices, `ins` read and `io` read and
/// written, through blocks of [`LANES`] values copied into local arrays. The copies let the
/// compiler vectorise `f` without proving that the slices do not overlap.
///
/// # Panics
/// If the slices differ in length.
#[inline(always)]
pub(crate) fn blocks<const I: usize, const M: usize>(
    ins: [&[f32]; I],
    mut io: [&mut [f32]; M],
    f: impl Fn(&[f32; I], &mut [f32; M]),
) {
    let n = io.first().map_or(0, |s| s.len());
    assert!(
        ins.iter().all(|s| s.len() == n) && io.iter().all(|s| s.len() == n),
        "slices of one loop differ in length"
    );
    let full = n - n % LANES;
    for start in (0..full).step_by(LANES) {
        block(&ins, &mut io, start, LANES, &f);
    }
    if full < n {
        block(&ins, &mut io, full, n - full, &f);
    }
}

/// One block of [`blocks`]: `width` values from `start`. Inlined, so in the loop over whole
/// blocks `width` is the constant [`LANES`] and the copies are register moves, not `memcpy`
/// calls.
#[inline(always)]
fn block<const I: usize, const M: usize>(
    ins: &[&[f32]; I],
    io: &mut [&mut [f32]; M],
    start: usize,
    width: usize,
    f: &impl Fn(&[f32; I], &mut [f32; M]),
) {
    let mut a = [[0.0f32; LANES]; I];
    let mut m = [[0.0f32; LANES]; M];
    for (dst, src) in a.iter_mut().zip(ins) {
        dst[..width].copy_from_slice(&src[start..start + width]);
    }
    for (dst, src) in m.iter_mut().zip(io.iter()) {
        dst[..width].copy_from_slice(&src[start..start + width]);
    }
    for l in 0..LANES {
        let x: [f32; I] = std::array::from_fn(|k| a[k][l]);
        let mut y: [f32; M] = std::array::from_fn(|k| m[k][l]);
        f(&x, &mut y);
        for (k, v) in y.into_iter().enumerate() {
            m[k][l] = v;
        }
    }
    for (dst, src) in io.iter_mut().zip(&m) {
        dst[start..start + width].copy_from_slice(&src[..width]);
    }
}
