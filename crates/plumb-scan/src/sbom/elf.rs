//! Just enough ELF to find a named section's bytes: the header, the section
//! header table and its string table, for 32- and 64-bit files of either
//! byte order. Anything out of bounds reads as "no such section".

/// The four bytes every ELF file starts with.
pub(crate) const MAGIC: &[u8; 4] = b"\x7fELF";

/// The contents of the section called `name`, when `data` is an ELF file
/// that has it (and it occupies space in the file).
pub(crate) fn section<'a>(data: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if !data.starts_with(MAGIC) {
        return None;
    }
    let wide = match data.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match data.get(5)? {
        1 => true,
        2 => false,
        _ => return None,
    };
    let r = Reader { data, little };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (r.u64(0x28)?, r.u16(0x3a)?, r.u16(0x3c)?, r.u16(0x3e)?)
    } else {
        (
            u64::from(r.u32(0x20)?),
            r.u16(0x2e)?,
            r.u16(0x30)?,
            r.u16(0x32)?,
        )
    };
    let header = |i: u16| -> Option<Section> {
        let at = usize::try_from(shoff).ok()? + usize::from(i) * usize::from(shentsize);
        if wide {
            Some(Section {
                name: r.u32(at)?,
                kind: r.u32(at + 4)?,
                offset: r.u64(at + 24)?,
                size: r.u64(at + 32)?,
            })
        } else {
            Some(Section {
                name: r.u32(at)?,
                kind: r.u32(at + 4)?,
                offset: u64::from(r.u32(at + 16)?),
                size: u64::from(r.u32(at + 20)?),
            })
        }
    };
    let names = header(shstrndx)?.bytes(data)?;
    (0..shnum).find_map(|i| {
        let s = header(i)?;
        let start = usize::try_from(s.name).ok()?;
        let rest = names.get(start..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        (&rest[..end] == name.as_bytes() && s.kind != SHT_NOBITS)
            .then(|| s.bytes(data))
            .flatten()
    })
}

/// A section that takes no space in the file (`.bss`).
const SHT_NOBITS: u32 = 8;

struct Section {
    name: u32,
    kind: u32,
    offset: u64,
    size: u64,
}

impl Section {
    fn bytes<'a>(&self, data: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.offset).ok()?;
        let end = start.checked_add(usize::try_from(self.size).ok()?)?;
        data.get(start..end)
    }
}

struct Reader<'a> {
    data: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.data.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.bytes(at)?;
        Some(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.bytes(at)?;
        Some(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b = self.bytes(at)?;
        Some(if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal little-endian ELF64 with a null section, `.shstrtab` and `.dep-v0`.
    fn tiny_elf() -> Vec<u8> {
        let strtab = b"\0.shstrtab\0.dep-v0\0";
        let payload = b"hello";
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(MAGIC);
        f[4] = 2;
        f[5] = 1;
        let strtab_at = f.len() as u64;
        f.extend_from_slice(strtab);
        let payload_at = f.len() as u64;
        f.extend_from_slice(payload);
        let shoff = f.len() as u64;
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        let mut sh = |name: u32, kind: u32, off: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[24..32].copy_from_slice(&off.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            f.extend_from_slice(&h);
        };
        sh(0, 0, 0, 0);
        sh(1, 3, strtab_at, strtab.len() as u64);
        sh(11, 1, payload_at, payload.len() as u64);
        f
    }

    #[test]
    fn finds_a_section_by_name() {
        let elf = tiny_elf();
        assert_eq!(section(&elf, ".dep-v0"), Some(&b"hello"[..]));
        assert_eq!(section(&elf, ".go.buildinfo"), None);
        assert_eq!(section(&elf[..100], ".dep-v0"), None);
        assert_eq!(section(b"not elf", ".dep-v0"), None);
    }
}
