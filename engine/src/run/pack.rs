//! Many samples run as one: their tokens packed into one `[tokens, d]` activation,
//! so every Linear, norm and MLP op is one large matmul instead of one small op per
//! sample (a sample of ~14 tokens spent most of its time packing each weight into
//! the matmul kernel). Attention stays within each sample ([`super::attention`]) and
//! positions restart at every sample, so a packed run computes the same function
//! as running each sample alone, with no padding (docs/numerics.md, "Packing").

use std::ops::Range;

/// Tokens per pack: large enough that a matmul's weight packing is amortised,
/// small enough that a model's activations and logits for one pack stay modest
/// and that two cores get several packs each.
pub const PACK_TOKENS: usize = 256;

/// Consecutive samples' token ids, concatenated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pack {
    ids: Vec<u32>,
    lens: Vec<usize>,
}

impl Pack {
    /// One sample alone.
    pub fn one(ids: &[u32]) -> Self {
        Self { ids: ids.to_vec(), lens: vec![ids.len()] }
    }

    /// `samples` in order, as one pack.
    pub fn of(samples: &[Vec<u32>]) -> Self {
        Self { ids: samples.concat(), lens: samples.iter().map(Vec::len).collect() }
    }

    /// `samples` in order, cut into packs of at most `max_tokens` tokens (a longer
    /// sample is a pack of its own; a sample is never split). Each pack comes with
    /// the range of sample indices it holds.
    pub fn split(samples: &[Vec<u32>], max_tokens: usize) -> Vec<(Range<usize>, Self)> {
        let mut packs = Vec::new();
        let mut start = 0;
        let mut tokens = 0;
        for (i, s) in samples.iter().enumerate() {
            if i > start && tokens + s.len() > max_tokens {
                packs.push((start..i, Self::of(&samples[start..i])));
                start = i;
                tokens = 0;
            }
            tokens += s.len();
        }
        if start < samples.len() {
            packs.push((start..samples.len(), Self::of(&samples[start..])));
        }
        packs
    }

    /// Every token id, samples one after the other.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Tokens in the pack.
    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// Tokens of each sample.
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    /// Each sample's rows of the packed activation.
    pub fn ranges(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.lens.iter().scan(0, |at, &n| {
            let r = *at..*at + n;
            *at += n;
            Some(r)
        })
    }

    /// Each token's position within its own sample (0 at every sample's start).
    pub fn positions(&self) -> Vec<u32> {
        self.lens.iter().flat_map(|&n| 0..n as u32).collect()
    }

    /// The longest sample.
    pub fn longest(&self) -> usize {
        self.lens.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_samples_whole_and_in_order() {
        let s: Vec<Vec<u32>> = vec![vec![1; 3], vec![2; 4], vec![3; 9], vec![4; 2], vec![5; 1]];
        let packs = Pack::split(&s, 8);
        let ranges: Vec<_> = packs.iter().map(|(r, _)| r.clone()).collect();
        // 3+4 fit, 9 is alone (longer than a pack), then 2+1.
        assert_eq!(ranges, [0..2, 2..3, 3..5]);
        assert_eq!(packs[0].1.ids(), [1, 1, 1, 2, 2, 2, 2]);
        assert_eq!(packs[1].1.tokens(), 9);
        assert_eq!(packs[2].1.positions(), [0, 1, 0]);
        assert_eq!(packs[0].1.ranges().collect::<Vec<_>>(), [0..3, 3..7]);
        assert_eq!(packs[0].1.longest(), 4);
        assert!(Pack::split(&[], 8).is_empty());
    }
}
