//! ggml's tensor types as GGUF files name them: the id stored in a tensor info,
//! the name llama.cpp prints, and the block layout every size follows from
//! (elements per block, bytes per block; ggml's `type_traits`). Every type a
//! current file can hold is listed, so any tensor's exact size is known even
//! where its values are not decoded.

/// One ggml type: `id` as stored, `block` elements take `block_bytes` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GgmlType {
    pub id: u32,
    pub name: &'static str,
    pub block: u64,
    pub block_bytes: u64,
}

const fn t(id: u32, name: &'static str, block: u64, block_bytes: u64) -> GgmlType {
    GgmlType { id, name, block, block_bytes }
}

/// ggml's types by id (ids 4 and 5, Q4_2 and Q4_3, and 31–33 were removed upstream).
pub const TYPES: [GgmlType; 34] = [
    t(0, "F32", 1, 4),
    t(1, "F16", 1, 2),
    t(2, "Q4_0", 32, 18),
    t(3, "Q4_1", 32, 20),
    t(6, "Q5_0", 32, 22),
    t(7, "Q5_1", 32, 24),
    t(8, "Q8_0", 32, 34),
    t(9, "Q8_1", 32, 40),
    t(10, "Q2_K", 256, 84),
    t(11, "Q3_K", 256, 110),
    t(12, "Q4_K", 256, 144),
    t(13, "Q5_K", 256, 176),
    t(14, "Q6_K", 256, 210),
    t(15, "Q8_K", 256, 292),
    t(16, "IQ2_XXS", 256, 66),
    t(17, "IQ2_XS", 256, 74),
    t(18, "IQ3_XXS", 256, 98),
    t(19, "IQ1_S", 256, 50),
    t(20, "IQ4_NL", 32, 18),
    t(21, "IQ3_S", 256, 110),
    t(22, "IQ2_S", 256, 82),
    t(23, "IQ4_XS", 256, 136),
    t(24, "I8", 1, 1),
    t(25, "I16", 1, 2),
    t(26, "I32", 1, 4),
    t(27, "I64", 1, 8),
    t(28, "F64", 1, 8),
    t(29, "IQ1_M", 256, 56),
    t(30, "BF16", 1, 2),
    t(34, "TQ1_0", 256, 54),
    t(35, "TQ2_0", 256, 66),
    t(39, "MXFP4", 32, 17),
    t(40, "NVFP4", 64, 36),
    t(41, "Q1_0", 128, 18),
];

/// The type named `name` exactly (upper case, as ggml prints it).
pub const fn by_name(name: &str) -> Option<GgmlType> {
    let mut i = 0;
    while i < TYPES.len() {
        if const_eq(TYPES[i].name.as_bytes(), name.as_bytes()) {
            return Some(TYPES[i]);
        }
        i += 1;
    }
    None
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The types quantscope quantizes as live schemes, in llama-quantize's order
/// of size: their short-form words are the lower-case names (`q4_k`).
pub const SCHEME_TYPES: [&str; 12] =
    ["Q8_0", "Q6_K", "Q5_1", "Q5_K", "Q5_0", "Q4_1", "IQ4_NL", "Q4_K", "Q4_0", "IQ4_XS", "Q3_K", "Q2_K"];

impl GgmlType {
    /// The type named `name` (any case), if ggml has one.
    pub fn from_name(name: &str) -> Option<Self> {
        TYPES.iter().copied().find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// Elements sharing one scale: the block, or a K-quant's sub-block.
    pub fn sub_block(self) -> usize {
        match self.name {
            "Q2_K" | "Q3_K" | "Q6_K" => 16,
            _ if self.block >= 32 => 32,
            _ => self.block as usize,
        }
    }

    /// Whether a sub-block stores a min beside its scale (R′ = S·q − m).
    pub fn has_min(self) -> bool {
        matches!(self.name, "Q4_1" | "Q5_1" | "Q2_K" | "Q4_K" | "Q5_K")
    }

    /// Bits per weight as stored.
    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes as f64 * 8.0 / self.block as f64
    }

    /// The type stored as `id`, if ggml has one.
    pub fn from_id(id: u32) -> Option<Self> {
        TYPES.iter().copied().find(|t| t.id == id)
    }

    /// Bytes of a row of `n` elements; `None` when `n` is not whole blocks or
    /// the size overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        n.is_multiple_of(self.block).then(|| (n / self.block).checked_mul(self.block_bytes)).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_sizes_follow_the_blocks() {
        let mut ids: Vec<u32> = TYPES.iter().map(|t| t.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), TYPES.len());
        let q4k = GgmlType::from_id(12).unwrap();
        assert_eq!((q4k.name, q4k.row_bytes(4096)), ("Q4_K", Some(16 * 144)));
        assert_eq!(q4k.row_bytes(384), None, "a K-quant row is whole 256-blocks");
        assert_eq!(GgmlType::from_id(4), None);
    }
}
