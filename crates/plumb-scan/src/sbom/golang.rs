//! Go binaries: the build information the Go linker embeds (what
//! `go version -m` prints). It starts at a 16-byte aligned `\xff Go buildinf:`
//! header, normally in the `.go.buildinfo` section. Since Go 1.18 the header's
//! flags say the two strings follow inline, each prefixed by its length as
//! an unsigned varint: the toolchain version (`go1.26.0`) and the module
//! information, lines of tab-separated fields: `path`, `mod` (the main
//! module), `dep` (a dependency) and `=>` (the line above is replaced).
//! Older binaries (pointer-based strings) are not read.

use super::purl::purl;
use super::{Ecosystem, Package, elf};

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Flag bit: strings are inline after the 32-byte header.
const FLAG_INLINE: u8 = 0x2;

fn go_package(location: &str, name: &str, version: &str) -> Package {
    Package {
        ecosystem: Ecosystem::Go,
        release: None,
        name: name.to_owned(),
        version: version.to_owned(),
        purl: purl("golang", name, version, &[]),
        source: None,
        location: location.to_owned(),
    }
}

/// Where the build information header starts, if anywhere.
fn header(binary: &[u8]) -> Option<&[u8]> {
    let found = |data: &'_ [u8]| -> Option<usize> {
        (0..data.len().saturating_sub(32))
            .step_by(16)
            .find(|&i| data[i..].starts_with(MAGIC))
    };
    if let Some(section) = elf::section(binary, ".go.buildinfo") {
        return found(section).map(|i| &section[i..]);
    }
    found(binary).map(|i| &binary[i..])
}

/// One varint-prefixed string; the rest after it.
fn read_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len: u64 = 0;
    for (i, &b) in data.iter().enumerate().take(10) {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let start = i + 1;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            return Some((data.get(start..end)?, data.get(end..)?));
        }
    }
    None
}

/// The Go toolchain and modules a binary was built from; empty when it is
/// not a Go binary (or one too old to carry inline build information).
pub(crate) fn buildinfo(location: &str, binary: &[u8]) -> Vec<Package> {
    let Some(h) = header(binary) else {
        return Vec::new();
    };
    if h.get(15).is_none_or(|flags| flags & FLAG_INLINE == 0) {
        return Vec::new();
    }
    let Some((version, rest)) = h.get(32..).and_then(read_string) else {
        return Vec::new();
    };
    let modinfo = read_string(rest).map(|(m, _)| m).unwrap_or_default();
    // The module text is framed by 16 bytes on each side.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    };
    let mut out = Vec::new();
    let version = String::from_utf8_lossy(version);
    if let Some(v) = version
        .split_whitespace()
        .next()
        .and_then(|v| v.strip_prefix("go"))
    {
        out.push(go_package(location, "stdlib", v));
    }
    modules(location, &String::from_utf8_lossy(modinfo), &mut out);
    out
}

/// The modules of a modinfo text; a `=>` line replaces the module above it
/// when it names a version (a replacement by a local directory keeps the
/// original's name and version).
fn modules(location: &str, text: &str, out: &mut Vec<Package>) {
    let mut pending: Option<(String, String)> = None;
    let push = |m: Option<(String, String)>, out: &mut Vec<Package>| {
        if let Some((path, version)) = m
            && !version.is_empty()
            && version != "(devel)"
        {
            out.push(go_package(location, &path, &version));
        }
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["mod" | "dep", path, version, ..] => {
                push(pending.take(), out);
                pending = Some(((*path).to_owned(), (*version).to_owned()));
            }
            ["=>", path, version, ..] if !version.is_empty() => {
                pending = Some(((*path).to_owned(), (*version).to_owned()));
            }
            _ => {}
        }
    }
    push(pending, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    #[test]
    fn reads_inline_build_info() {
        let modinfo = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/text\tv0.21.0\th1:x=\ndep\tgithub.com/a/b\tv1.0.0\th1:y=\n=>\tgithub.com/fork/b\tv1.0.1\th1:z=\ndep\tgithub.com/c/d\tv0.1.0\t\n=>\t../d\t\t\nbuild\tGOOS=linux\n";
        let framed = format!("{}{modinfo}{}", "0".repeat(16), "1".repeat(16));
        let mut data = vec![0u8; 48];
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&[8, FLAG_INLINE]);
        data.extend_from_slice(&[0u8; 16]);
        varint(8, &mut data);
        data.extend_from_slice(b"go1.26.0");
        varint(framed.len(), &mut data);
        data.extend_from_slice(framed.as_bytes());
        let p = buildinfo("app", &data);
        let got: Vec<_> = p.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            got,
            [
                "pkg:golang/stdlib@1.26.0",
                "pkg:golang/golang.org/x/text@v0.21.0",
                "pkg:golang/github.com/fork/b@v1.0.1",
                "pkg:golang/github.com/c/d@v0.1.0",
            ]
        );
    }

    #[test]
    fn other_binaries_have_none() {
        assert!(buildinfo("x", b"\x7fELF plain").is_empty());
    }
}
