//! bpk-check: load an ember (Burn 0.21) Burnpack `.bpk` char-LM into a Burn 0.22 mirror model and
//! compute the mean per-token NLL over the first N non-empty lines of a names file.
//!
//! Usage:
//!   bpk-check <model.bpk> <vocab.json> <names.txt> <N>
//!   bpk-check --selftest <dir>        (0.22 save → load round trip + LSTM math vs. scalar f64)

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use bpk_check::model::{AnyRecurrent, CharLm, Dims};
use bpk_check::{line_nll, ndarray_device};
use burn::prelude::*;
use burn_store::{BurnpackStore, ModuleSnapshot, ModuleStore};
use serde::Deserialize;

#[derive(Deserialize)]
struct VocabFile {
    format: String,
    specials: Vec<String>,
    chars: Vec<char>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--selftest" {
        selftest(Path::new(&args[2]));
        return;
    }
    if args.len() != 5 {
        eprintln!("usage: bpk-check <model.bpk> <vocab.json> <names.txt> <N> | --selftest <dir>");
        std::process::exit(2);
    }
    let (bpk, vocab_path, names_path) = (&args[1], &args[2], &args[3]);
    let n: usize = args[4].parse().expect("N must be an integer");
    let device = ndarray_device();

    // --- vocabulary
    let vocab: VocabFile =
        serde_json::from_str(&std::fs::read_to_string(vocab_path).expect("read vocab"))
            .expect("parse vocab.json");
    assert_eq!(vocab.format, "ember-vocab/1", "vocab format");
    assert_eq!(vocab.specials, ["<pad>", "<s>", "</s>"], "vocab specials");
    let ids: HashMap<char, usize> = vocab
        .chars
        .iter()
        .enumerate()
        .map(|(k, &c)| (c, k + 3))
        .collect();
    let vocab_size = 3 + vocab.chars.len();

    // --- inspect the file
    let mut store = BurnpackStore::from_file(bpk).auto_extension(false);
    let tensors = store.get_all_tensors().expect("read bpk").clone();
    println!("tensors in {bpk}:");
    for (name, t) in &tensors {
        println!("  {name:40} {:?} {:?} param_id={:?}", t.dtype, t.shape.as_slice(), t.param_id);
    }
    let shape = |name: &str| -> Vec<usize> {
        tensors
            .get(name)
            .unwrap_or_else(|| panic!("file has no tensor {name}"))
            .shape
            .as_slice()
            .to_vec()
    };
    let emb = shape("embedding.weight");
    let layers = (0..)
        .take_while(|k| tensors.contains_key(&format!("body.Lstm.cells.{k}.weight_ih")))
        .count();
    assert!(layers > 0, "no body.Lstm.cells.0.weight_ih: not an LSTM CharLm?");
    let whh = shape("body.Lstm.cells.0.weight_hh");
    let dims = Dims {
        vocab: emb[0],
        embed: emb[1],
        hidden: whh[1],
        layers,
    };
    println!("inferred dims: {dims:?}");
    assert_eq!(dims.vocab, vocab_size, "embedding rows vs vocab.json size");

    // --- load
    let mut model = CharLm::init(dims, &device);
    let t0 = Instant::now();
    let result = model.load_from(&mut store).expect("BurnpackStore::load_from");
    println!(
        "apply result: applied={} missing={} unused={} skipped={} errors={} ({:.1} ms)",
        result.applied.len(),
        result.missing.len(),
        result.unused.len(),
        result.skipped.len(),
        result.errors.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    println!("{result}");
    assert!(
        result.missing.is_empty() && result.unused.is_empty() && result.errors.is_empty(),
        "incomplete load"
    );

    // --- NLL
    let text = std::fs::read_to_string(names_path).expect("read names");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .collect();
    let t0 = Instant::now();
    let (mut sum, mut count, mut refsum) = (0.0f64, 0usize, 0.0f64);
    let with_ref = std::env::var_os("BPK_NO_REF").is_none();
    for line in &lines {
        let mut toks = vec![1usize];
        for c in line.chars() {
            toks.push(*ids.get(&c).unwrap_or_else(|| panic!("char {c:?} not in vocab")));
        }
        toks.push(2);
        let (s, k) = line_nll(&model, &toks, &device);
        sum += s;
        count += k;
        if with_ref {
            refsum += reference_nll(&model, &toks);
        }
    }
    println!(
        "lines: {} (asked {n}); eval {:.2} s",
        lines.len(),
        t0.elapsed().as_secs_f64()
    );
    if with_ref {
        println!(
            "f64 scalar reference (same weights): {:.6}",
            refsum / count as f64
        );
    }
    println!("mean nll: {:.6} over {count} tokens", sum / count as f64);
}

/// Plain-f64 reference of the whole model, from the module's own tensors.
fn reference_nll(model: &CharLm, toks: &[usize]) -> f64 {
    fn mat(t: Tensor<2>) -> (Vec<f64>, usize, usize) {
        let [r, c] = t.dims();
        let d = t.into_data().convert::<f32>();
        (d.as_slice::<f32>().unwrap().iter().map(|&x| x as f64).collect(), r, c)
    }
    fn vec1(t: Tensor<1>) -> Vec<f64> {
        let d = t.into_data().convert::<f32>();
        d.as_slice::<f32>().unwrap().iter().map(|&x| x as f64).collect()
    }
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let (emb, _, e) = mat(model.embedding.weight.val());
    let mut xs: Vec<Vec<f64>> = toks[..toks.len() - 1]
        .iter()
        .map(|&t| emb[t * e..(t + 1) * e].to_vec())
        .collect();
    let AnyRecurrent::Lstm(rec) = &model.body;
    for cell in &rec.cells {
        let (wih, g4, inp) = mat(cell.weight_ih.val());
        let (whh, _, h) = mat(cell.weight_hh.val());
        let bih = vec1(cell.bias_ih.as_ref().unwrap().val());
        let bhh = vec1(cell.bias_hh.as_ref().unwrap().val());
        assert_eq!(g4, 4 * h);
        let (mut hs, mut cs) = (vec![0.0; h], vec![0.0; h]);
        let mut out = Vec::new();
        for x in &xs {
            let mut g = vec![0.0; g4];
            for r in 0..g4 {
                let mut a = bih[r] + bhh[r];
                for k in 0..inp {
                    a += wih[r * inp + k] * x[k];
                }
                for k in 0..h {
                    a += whh[r * h + k] * hs[k];
                }
                g[r] = a;
            }
            for j in 0..h {
                let (i, f, gg, o) = (sig(g[j]), sig(g[h + j]), g[2 * h + j].tanh(), sig(g[3 * h + j]));
                cs[j] = f * cs[j] + i * gg;
                hs[j] = o * cs[j].tanh();
            }
            out.push(hs.clone());
        }
        xs = out;
    }
    let (w, din, v) = mat(model.head.weight.val()); // [d_input, d_output]
    let b = vec1(model.head.bias.as_ref().unwrap().val());
    let mut nll = 0.0;
    for (x, &y) in xs.iter().zip(&toks[1..]) {
        let logits: Vec<f64> = (0..v)
            .map(|o| b[o] + (0..din).map(|k| x[k] * w[k * v + o]).sum::<f64>())
            .collect();
        let m = logits.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
        nll += lse - logits[y];
    }
    nll
}

fn selftest(dir: &Path) {
    let device = ndarray_device();
    std::fs::create_dir_all(dir).unwrap();
    for layers in [1, 2] {
        let dims = Dims {
            vocab: 11,
            embed: 5,
            hidden: 7,
            layers,
        };
        let model = CharLm::init(dims, &device);
        let path = dir.join(format!("selftest_l{layers}.bpk"));
        let mut store = BurnpackStore::from_file(&path).overwrite(true);
        model.save_into(&mut store).expect("save");
        let mut loaded = CharLm::init(dims, &device);
        let mut store = BurnpackStore::from_file(&path);
        println!("layers={layers}: paths written by 0.22: {:?}", store.keys().unwrap());
        let r = loaded.load_from(&mut store).expect("load");
        println!(
            "  apply: applied={} missing={} unused={} errors={}",
            r.applied.len(),
            r.missing.len(),
            r.unused.len(),
            r.errors.len()
        );
        let toks = [1usize, 4, 7, 3, 10, 5, 2];
        let (a, _) = line_nll(&model, &toks, &device);
        let (b, k) = line_nll(&loaded, &toks, &device);
        let c = reference_nll(&loaded, &toks);
        println!("  nll sum: original {a:.7}  loaded {b:.7}  f64 reference {c:.7}  ({k} tokens)");
        assert!((a - b).abs() < 1e-6, "round trip changed the model");
        assert!((b - c).abs() < 1e-4 * k as f64, "LSTM math disagrees with reference");
    }
    println!("selftest ok");
}
