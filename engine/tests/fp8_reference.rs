//! Every FP8 code and every rounding case of ml_dtypes' reference tables
//! (copied from shared/reference into tests/data) must match bit for bit.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use quantscope_engine::Fp8Format;

fn rows(file: &str) -> Vec<Vec<String>> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn code(s: &str) -> u8 {
    u8::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

fn check_codes(fmt: Fp8Format, file: &str) {
    let rows = rows(file);
    assert_eq!(rows.len(), 256, "{file}");
    for r in rows {
        let c = code(&r[0]);
        let got = fmt.value(c);
        match r[1].as_str() {
            "nan" => assert!(got.is_nan(), "{file} {c:#04x}: {got}"),
            "inf" => assert_eq!(got, f32::INFINITY, "{c:#04x}"),
            "-inf" => assert_eq!(got, f32::NEG_INFINITY, "{c:#04x}"),
            v => {
                let want: f32 = v.parse().unwrap();
                assert_eq!(got.to_bits(), want.to_bits(), "{file} {c:#04x}: {got} vs {want}");
            }
        }
    }
}

fn check_rounding(fmt: Fp8Format, file: &str) -> usize {
    let rows = rows(file);
    for r in &rows {
        let x = f32::from_bits(u32::from_str_radix(&r[0], 16).unwrap());
        let want = code(&r[2]);
        assert_eq!(fmt.encode(x), want, "{file}: input {} ({x:e}) expected {want:#04x}", r[0]);
    }
    rows.len()
}

#[test]
fn e4m3_codes_and_rounding() {
    check_codes(Fp8Format::E4M3, "fp8_e4m3fn_codes.tsv");
    assert!(check_rounding(Fp8Format::E4M3, "fp8_e4m3fn_rounding.tsv") > 9000);
}

#[test]
fn e5m2_codes_and_rounding() {
    check_codes(Fp8Format::E5M2, "fp8_e5m2_codes.tsv");
    assert!(check_rounding(Fp8Format::E5M2, "fp8_e5m2_rounding.tsv") > 8900);
}

#[test]
fn every_code_round_trips_through_its_value() {
    for fmt in [Fp8Format::E4M3, Fp8Format::E5M2] {
        for c in 0..=255u8 {
            let v = fmt.value(c);
            if v.is_finite() {
                assert_eq!(fmt.encode(v), c, "{c:#04x} = {v}");
            }
        }
    }
}
