//! A batch cut into parts by rows, each part on its own thread. Rows of a recurrence never
//! meet (each step's product is row by row), so the parts run the whole sequence with no
//! synchronisation between steps, each on its own rows of the shared buffers; the first part
//! takes the first rows, so a packed batch (active rows a prefix) stays packed in each part.
//! The weight gradients are one product over the whole batch afterwards.

use rayon::prelude::*;

/// Fewest rows a part may have: below this a second thread costs more than it saves.
const MIN_ROWS: usize = 8;

/// The first row of each part of a batch of `batch` rows, then `batch`: two parts on a pool
/// of two threads or more (rayon's, which `RAYON_NUM_THREADS` sets) when each gets
/// [`MIN_ROWS`] rows, else one.
pub(crate) fn cuts(batch: usize) -> Vec<usize> {
    if rayon::current_num_threads() >= 2 && batch >= 2 * MIN_ROWS {
        vec![0, batch.div_ceil(2), batch]
    } else {
        vec![0, batch]
    }
}

/// For each part, its rows of every `[batch, width]` block of `buf` (empty lists when `buf`
/// is empty).
pub(crate) fn split_mut<'a>(
    buf: &'a mut [f32],
    batch: usize,
    width: usize,
    cuts: &[usize],
) -> Vec<Vec<&'a mut [f32]>> {
    let mut parts: Vec<Vec<&'a mut [f32]>> = cuts.windows(2).map(|_| Vec::new()).collect();
    if batch * width == 0 {
        return parts;
    }
    for block in buf.chunks_exact_mut(batch * width) {
        let mut rest = block;
        for (part, cut) in parts.iter_mut().zip(cuts.windows(2)) {
            let (mine, tail) = rest.split_at_mut((cut[1] - cut[0]) * width);
            part.push(mine);
            rest = tail;
        }
    }
    parts
}

/// [`split_mut`] for a buffer that is only read.
pub(crate) fn split<'a>(
    buf: &'a [f32],
    batch: usize,
    width: usize,
    cuts: &[usize],
) -> Vec<Vec<&'a [f32]>> {
    let mut parts: Vec<Vec<&'a [f32]>> = cuts.windows(2).map(|_| Vec::new()).collect();
    if batch * width == 0 {
        return parts;
    }
    for block in buf.chunks_exact(batch * width) {
        for (part, cut) in parts.iter_mut().zip(cuts.windows(2)) {
            part.push(&block[cut[0] * width..cut[1] * width]);
        }
    }
    parts
}

/// Each part's active rows per step, from the batch's.
pub(crate) fn active(active: &[usize], cuts: &[usize]) -> Vec<Vec<usize>> {
    cuts.windows(2)
        .map(|cut| {
            active
                .iter()
                .map(|&rows| rows.clamp(cut[0], cut[1]) - cut[0])
                .collect()
        })
        .collect()
}

/// The one block of a part's list (a `[batch, width]` buffer has one), or an empty slice.
pub(crate) fn one<'a, T: ?Sized>(list: &mut Vec<&'a T>) -> &'a T
where
    &'a T: Default,
{
    list.pop().unwrap_or_default()
}

/// [`one`] for a mutable list.
pub(crate) fn one_mut<'a>(list: &mut Vec<&'a mut [f32]>) -> &'a mut [f32] {
    list.pop().unwrap_or_default()
}

/// Runs `f` on every part, each on its own thread of rayon's pool when there are several.
pub(crate) fn run<P: Send>(mut parts: Vec<P>, f: impl Fn(P) + Sync + Send) {
    if parts.len() == 1 {
        f(parts.pop().expect("one part"));
    } else {
        parts.into_par_iter().for_each(f);
    }
}

/// Step `t`'s first `len` values of a part's saved per-step buffer, or of `scratch`, used
/// instead when the pass saves nothing (the list is empty).
pub(crate) fn block<'b>(
    saved: &'b mut [&mut [f32]],
    t: usize,
    scratch: &'b mut [f32],
    len: usize,
) -> &'b mut [f32] {
    match saved.get_mut(t) {
        Some(s) => &mut s[..len],
        None => &mut scratch[..len],
    }
}

/// Takes the lists of part `k` out of `lists`, leaving empty ones.
pub(crate) fn take<T>(lists: &mut [Vec<T>], k: usize) -> Vec<T> {
    lists.get_mut(k).map(std::mem::take).unwrap_or_default()
}
