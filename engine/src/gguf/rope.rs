//! The Q/K row order of Llama-family GGUF files. `convert_hf_to_gguf.py`
//! permutes the rows of `attn_q` (by the head count) and `attn_k` (by the KV
//! head count) so that ggml's rope can rotate adjacent pairs:
//! `w.reshape(n_head, 2, rows / n_head / 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
//! Comparing such a tensor with the Hugging Face weight element by element
//! needs the inverse first.

/// Row `r` of the GGUF tensor holds Hugging Face row `hf_row(r)` (`rows` rows,
/// `n_head` heads; `None` when the heads do not split the rows in pairs).
fn hf_row(r: usize, rows: usize, n_head: usize) -> Option<usize> {
    let half = rows.checked_div(n_head)?.checked_div(2).filter(|&h| h > 0 && h * 2 * n_head == rows)?;
    // GGUF index (head, i, pair) over (n_head, half, 2) came from HF (head, pair, i) over (n_head, 2, half).
    let (head, rest) = (r / (2 * half), r % (2 * half));
    let (i, pair) = (rest / 2, rest % 2);
    Some(head * 2 * half + pair * half + i)
}

/// The Hugging Face order of a GGUF `attn_q` / `attn_k` weight of `rows` rows
/// of `cols` items (values, or a row's sub-block parameters): `values`
/// (row-major, GGUF order) reordered; `None` when `n_head` does not split the
/// rows into pairs.
pub fn unpermute_rows<T: Copy>(values: &[T], rows: usize, cols: usize, n_head: usize) -> Option<Vec<T>> {
    if rows.checked_mul(cols)? != values.len() {
        return None;
    }
    let mut out = values.to_vec();
    for (r, row) in values.chunks_exact(cols.max(1)).enumerate().take(rows) {
        let h = hf_row(r, rows, n_head)?;
        out[h * cols..(h + 1) * cols].copy_from_slice(row);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The converter's permutation, as it is written there.
    fn permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
        let half = rows / n_head / 2;
        let mut out = Vec::with_capacity(w.len());
        for head in 0..n_head {
            for i in 0..half {
                for pair in 0..2 {
                    let r = head * 2 * half + pair * half + i;
                    out.extend_from_slice(&w[r * cols..(r + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermuting_undoes_the_converter() {
        let (rows, cols) = (16, 3);
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        for n_head in [1, 2, 4, 8] {
            let gguf = permute(&hf, rows, cols, n_head);
            assert_eq!(unpermute_rows(&gguf, rows, cols, n_head).unwrap(), hf, "{n_head} heads");
        }
        // One head of 4 rows: HF rows [0, 1 | 2, 3] interleave as 0, 2, 1, 3.
        let gguf = permute(&[0.0, 1.0, 2.0, 3.0], 4, 1, 1);
        assert_eq!(gguf, [0.0, 2.0, 1.0, 3.0]);
        assert_eq!(unpermute_rows(&hf, rows, cols, 3), None, "3 heads do not split 16 rows in pairs");
    }
}
