//! Property tests of the batching invariants: nothing lost, nothing duplicated, no padding
//! leaking into targets, masks that match lengths, and streams that continue across batches.

use burn::backend::NdArray;
use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use ember_data::labelled::{ClassBatch, ClassBatcher, LabelledSequence};
use ember_data::series::{consecutive_batches, consecutive_windows, SeriesBatch, SeriesBatcher};
use ember_data::split::{shuffled_split, stratified_split};
use ember_data::{
    bucketed_batches, random_batches, random_chunks, stream_chunks, Fractions, SequenceBatch,
    SequenceBatcher, StreamBatch, StreamBatcher, TokenSequence, IGNORE_INDEX,
};
use proptest::prelude::*;

type B = NdArray;

fn ints<const D: usize>(t: Tensor<B, D, Int>) -> Vec<i64> {
    t.into_data().iter::<i64>().collect()
}

fn bools(t: Tensor<B, 2, Bool>) -> Vec<bool> {
    t.into_data().iter::<bool>().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Padded token batches: the mask is exactly `t < length`, inputs/targets are the sequence
    /// shifted by one at valid steps, and targets at padded steps are the ignore value only.
    #[test]
    fn masks_match_lengths_and_padding_never_reaches_targets(
        seqs in prop::collection::vec(prop::collection::vec(3usize..40, 2..12), 1..9)
    ) {
        let items: Vec<TokenSequence> = seqs.iter().map(|t| TokenSequence { tokens: t.clone() }).collect();
        let batch: SequenceBatch<B> = SequenceBatcher::new(0).batch(items, &Default::default());
        let steps = seqs.iter().map(|s| s.len() - 1).max().unwrap();
        let (inputs, targets, mask) = (ints(batch.inputs), ints(batch.targets), bools(batch.mask));
        for (b, s) in seqs.iter().enumerate() {
            prop_assert_eq!(batch.lengths[b], s.len() - 1);
            for t in 0..steps {
                let i = b * steps + t;
                prop_assert_eq!(mask[i], t < s.len() - 1);
                if mask[i] {
                    prop_assert_eq!(inputs[i], s[t] as i64);
                    prop_assert_eq!(targets[i], s[t + 1] as i64);
                } else {
                    prop_assert_eq!(targets[i], IGNORE_INDEX);
                    prop_assert_eq!(inputs[i], 0);
                }
            }
        }
    }

    /// Classification batches: labels in order, masks match lengths.
    #[test]
    fn class_batches_keep_labels_and_lengths(
        seqs in prop::collection::vec((prop::collection::vec(3usize..20, 1..10), 0usize..5), 1..9)
    ) {
        let items: Vec<LabelledSequence> = seqs
            .iter()
            .map(|(t, l)| LabelledSequence { tokens: t.clone(), label: *l })
            .collect();
        let batch: ClassBatch<B> = ClassBatcher::new(0).batch(items, &Default::default());
        prop_assert_eq!(ints(batch.labels), seqs.iter().map(|(_, l)| *l as i64).collect::<Vec<_>>());
        let steps = seqs.iter().map(|(t, _)| t.len()).max().unwrap();
        let mask = bools(batch.mask);
        for (b, (t, _)) in seqs.iter().enumerate() {
            for s in 0..steps {
                prop_assert_eq!(mask[b * steps + s], s < t.len());
            }
        }
    }

    /// Stateless chunks: every position after the first is a target exactly once per epoch.
    #[test]
    fn random_chunks_cover_every_token_once(len in 2usize..400, seq_len in 1usize..50) {
        let ids: Vec<usize> = (0..len).collect();
        let chunks = random_chunks(&ids, seq_len).unwrap();
        let mut targets: Vec<usize> = chunks.iter().flat_map(|c| c.tokens[1..].to_vec()).collect();
        targets.sort();
        prop_assert_eq!(targets, (1..len).collect::<Vec<_>>());
        prop_assert!(chunks.iter().all(|c| c.tokens.len() >= 2 && c.tokens.len() <= seq_len + 1));
    }

    /// TBPTT streams: each row of consecutive chunks continues the previous chunk's row, the
    /// streams together cover the text (less the dropped remainder), and only the first chunk
    /// resets the state.
    #[test]
    fn stream_chunks_continue_across_batches(
        len in 4usize..600, streams in 1usize..8, seq_len in 1usize..40
    ) {
        prop_assume!(len / streams >= 2);
        let ids: Vec<usize> = (0..len).collect();
        let chunks = stream_chunks(&ids, streams, seq_len, "t").unwrap();
        let per = len / streams;
        for b in 0..streams {
            let mut row_inputs = Vec::new();
            let mut last_target = None;
            for chunk in &chunks {
                let row = &chunk.inputs[b * chunk.steps..(b + 1) * chunk.steps];
                let targets = &chunk.targets[b * chunk.steps..(b + 1) * chunk.steps];
                if let Some(prev) = last_target {
                    prop_assert_eq!(row[0], prev, "chunk does not continue the stream");
                }
                for t in 0..chunk.steps {
                    prop_assert_eq!(targets[t], row[t] + 1);
                }
                last_target = targets.last().copied();
                row_inputs.extend_from_slice(row);
            }
            prop_assert_eq!(row_inputs, (b * per..(b + 1) * per - 1).collect::<Vec<_>>());
        }
        prop_assert!(chunks[0].first && chunks[1..].iter().all(|c| !c.first));
        let batch: StreamBatch<B> = StreamBatcher.batch(vec![chunks[0].clone()], &Default::default());
        prop_assert!(batch.first);
        prop_assert_eq!(batch.batch.num_tokens(), streams * chunks[0].steps);
    }

    /// Bucketing and random batching lose and duplicate nothing, and bucketing never pads more
    /// than the longest length allows.
    #[test]
    fn batchings_are_partitions(
        lengths in prop::collection::vec(1usize..60, 1..500), batch_size in 1usize..70, seed in 0u64..1000
    ) {
        for batches in [
            bucketed_batches(&lengths, batch_size, seed),
            random_batches(lengths.len(), batch_size, seed),
        ] {
            prop_assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= batch_size));
            let mut all: Vec<usize> = batches.concat();
            all.sort();
            prop_assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
        }
        prop_assert_eq!(
            bucketed_batches(&lengths, batch_size, seed),
            bucketed_batches(&lengths, batch_size, seed)
        );
    }

    /// Splits are seeded partitions; stratified splits keep every class in validation.
    #[test]
    fn splits_are_seeded_partitions(
        labels in prop::collection::vec(0usize..4, 12..200), seed in 0u64..1000, valid in 0.05f64..0.5
    ) {
        let n = labels.len();
        let s = shuffled_split(n, Fractions { valid, test: 0.1 }, seed, "x").unwrap();
        prop_assert_eq!(&s, &shuffled_split(n, Fractions { valid, test: 0.1 }, seed, "x").unwrap());
        let mut all = [s.train.clone(), s.valid.clone(), s.test.clone()].concat();
        all.sort();
        prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
        prop_assert!(!s.train.is_empty() && !s.valid.is_empty() && !s.test.is_empty());

        let names: Vec<String> = (0..4).map(|c| format!("c{c}")).collect();
        let counts: Vec<usize> = (0..4).map(|c| labels.iter().filter(|&&l| l == c).count()).collect();
        let present: Vec<String> = names.iter().zip(&counts).filter(|(_, &k)| k > 0).map(|(n, _)| n.clone()).collect();
        let relabel: Vec<usize> = labels.iter().map(|&l| present.iter().position(|p| *p == names[l]).unwrap()).collect();
        match stratified_split(&relabel, &present, Fractions::valid(valid), seed) {
            Ok(st) => {
                let mut all = [st.train.clone(), st.valid.clone()].concat();
                all.sort();
                prop_assert_eq!(all, (0..n).collect::<Vec<_>>());
                for c in 0..present.len() {
                    prop_assert!(st.valid.iter().any(|&i| relabel[i] == c));
                }
            }
            Err(e) => prop_assert!(counts.contains(&1), "unexpected error {}", e),
        }
    }

    /// Consecutive windows of several sequences, batched: row b of batch k+1 continues row b
    /// of batch k, and the targets are the inputs shifted by one.
    #[test]
    fn consecutive_windows_carry_each_sequence(
        n_seq in 1usize..7, len in 3usize..60, window in 1usize..20, batch_size in 1usize..5
    ) {
        prop_assume!(window < len);
        let sequences: Vec<Vec<f32>> = (0..n_seq)
            .map(|s| (0..len).map(|t| (s * 1000 + t) as f32).collect())
            .collect();
        let windows: Vec<_> = sequences.iter().map(|v| consecutive_windows(v, window, "s").unwrap()).collect();
        let per_seq = windows[0].len();
        let batches = consecutive_batches(windows, batch_size);
        prop_assert_eq!(batches.len(), n_seq.div_ceil(batch_size) * per_seq);
        for group in batches.chunks(per_seq) {
            for (k, batch) in group.iter().enumerate() {
                prop_assert!(batch.iter().all(|w| w.first == (k == 0)));
                if k > 0 {
                    for (prev, next) in group[k - 1].iter().zip(batch) {
                        prop_assert_eq!(next.input[0], *prev.target.last().unwrap());
                    }
                }
                for w in batch {
                    prop_assert_eq!(w.input.len(), w.target.len());
                    prop_assert!(w.input.iter().zip(&w.target).all(|(x, y)| *y == x + 1.0));
                }
            }
        }
        let sb: SeriesBatch<B> = SeriesBatcher.batch(batches[0].clone(), &Default::default());
        prop_assert!(sb.first);
        prop_assert_eq!(sb.inputs.dims()[0], batches[0].len());
    }
}
