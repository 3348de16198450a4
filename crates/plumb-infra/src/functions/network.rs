//! IP network functions: `cidrhost`, `cidrnetmask`, `cidrsubnet` and
//! `cidrsubnets`, and the prefix arithmetic behind them, over IPv4 and IPv6
//! alike (addresses as `u128`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use plumb_tfplugin::Value;

use super::builtin::{CallContext, Function, FunctionError, arity, functions, only, text, whole};

/// The IP network functions.
pub const FUNCTIONS: &[Function] = functions![cidrhost, cidrnetmask, cidrsubnet, cidrsubnets];

fn cidrhost(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    Ok(Value::String(host(&text(&args[0])?, whole(&args[1])?)?))
}

fn cidrnetmask(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(netmask(&text(only(args)?)?)?))
}

fn cidrsubnet(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 3)?;
    Ok(Value::String(subnet(
        &text(&args[0])?,
        whole(&args[1])?,
        whole(&args[2])?,
    )?))
}

fn cidrsubnets(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    let (prefix, newbits) = args.split_first().ok_or("expects a prefix and new bits")?;
    let newbits = newbits.iter().map(whole).collect::<Result<Vec<_>, _>>()?;
    Ok(Value::List(
        subnets(&text(prefix)?, &newbits)?
            .into_iter()
            .map(Value::String)
            .collect(),
    ))
}

/// A parsed prefix: its network address (host bits cleared), its length and
/// the address width (32 or 128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Prefix {
    base: u128,
    len: u32,
    bits: u32,
}

/// The host part of a prefix of `len` bits in a `bits`-wide address.
fn host_mask(bits: u32, len: u32) -> u128 {
    let host = bits - len;
    if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    }
}

fn parse(text: &str) -> Result<Prefix, String> {
    let (ip, len) = text
        .split_once('/')
        .ok_or_else(|| format!("invalid CIDR address {text:?}: no /prefix length"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("invalid CIDR address {text:?}: {ip:?} is not an IP address"))?;
    let (addr, bits) = match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let len: u32 = len
        .parse()
        .ok()
        .filter(|l| *l <= bits)
        .ok_or_else(|| format!("invalid CIDR address {text:?}: bad prefix length {len:?}"))?;
    Ok(Prefix {
        base: addr & !host_mask(bits, len),
        len,
        bits,
    })
}

fn show(addr: u128, bits: u32) -> String {
    if bits == 32 {
        Ipv4Addr::from(addr as u32).to_string()
    } else {
        Ipv6Addr::from(addr).to_string()
    }
}

/// `cidrhost(prefix, hostnum)`: the address of host `hostnum` in the prefix;
/// a negative number counts back from the last address.
fn host(prefix: &str, hostnum: i64) -> Result<String, String> {
    let p = parse(prefix)?;
    let mask = host_mask(p.bits, p.len);
    let magnitude = u128::from(hostnum.unsigned_abs());
    let fits = if hostnum >= 0 {
        magnitude <= mask
    } else {
        magnitude - 1 <= mask
    };
    if !fits {
        return Err(format!(
            "prefix of {} bits does not accommodate a host numbered {hostnum}",
            p.len
        ));
    }
    let offset = if hostnum >= 0 {
        magnitude
    } else {
        mask - (magnitude - 1)
    };
    Ok(show(p.base | offset, p.bits))
}

/// `cidrnetmask(prefix)`: the dotted netmask of an IPv4 prefix.
fn netmask(prefix: &str) -> Result<String, String> {
    let p = parse(prefix)?;
    if p.bits != 32 {
        return Err("only IPv4 prefixes have a dotted netmask".into());
    }
    Ok(show(!host_mask(32, p.len) & u128::from(u32::MAX), 32))
}

/// `cidrsubnet(prefix, newbits, netnum)`: subnet `netnum` of the prefix
/// extended by `newbits` bits.
fn subnet(prefix: &str, newbits: i64, netnum: i64) -> Result<String, String> {
    let p = parse(prefix)?;
    let len = extend(&p, newbits)?;
    let count_bits = len - p.len;
    let fits = netnum >= 0 && (count_bits >= 63 || netnum < (1i64 << count_bits));
    if !fits {
        return Err(format!(
            "prefix extension of {newbits} bits does not accommodate a subnet numbered {netnum}"
        ));
    }
    let step = host_mask(p.bits, len).wrapping_add(1);
    let addr = p.base | (netnum as u128).wrapping_mul(step);
    Ok(format!("{}/{len}", show(addr, p.bits)))
}

fn extend(p: &Prefix, newbits: i64) -> Result<u32, String> {
    u32::try_from(newbits)
        .ok()
        .map(|n| p.len + n)
        .filter(|l| *l <= p.bits)
        .ok_or_else(|| {
            format!(
                "insufficient address space to extend a prefix of {} bits by {newbits}",
                p.len
            )
        })
}

/// `cidrsubnets(prefix, newbits...)`: consecutive subnets of the given sizes,
/// each aligned to its own size, in order, without overlap.
fn subnets(prefix: &str, newbits: &[i64]) -> Result<Vec<String>, String> {
    let p = parse(prefix)?;
    let last = p.base | host_mask(p.bits, p.len);
    let mut next_free = Some(p.base);
    let mut out = Vec::with_capacity(newbits.len());
    for nb in newbits {
        let len = extend(&p, *nb)?;
        let mask = host_mask(p.bits, len);
        let start = next_free
            .and_then(|f| f.checked_add(mask))
            .map(|x| x & !mask)
            .filter(|s| *s <= last && s.checked_add(mask).is_some_and(|end| end <= last))
            .ok_or_else(|| {
                format!("not enough remaining address space in {prefix} for a subnet of {len} bits")
            })?;
        out.push(format!("{}/{len}", show(start, p.bits)));
        next_free = (start | mask).checked_add(1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_count_from_either_end() {
        assert_eq!(host("10.12.112.0/20", 16).unwrap(), "10.12.112.16");
        assert_eq!(host("10.12.112.0/20", 268).unwrap(), "10.12.113.12");
        assert_eq!(host("10.12.112.0/20", -1).unwrap(), "10.12.127.255");
        assert_eq!(host("10.12.112.7/20", 0).unwrap(), "10.12.112.0");
        assert_eq!(
            host("fd00:fd12:3456:7890::/56", 16).unwrap(),
            "fd00:fd12:3456:7800::10"
        );
        assert!(
            host("10.0.0.0/30", 4)
                .unwrap_err()
                .contains("host numbered 4")
        );
        assert!(host("10.0.0.0/30", -5).is_err());
        assert_eq!(host("10.0.0.0/30", -4).unwrap(), "10.0.0.0");
        assert!(host("10.0.0.0", 1).unwrap_err().contains("prefix length"));
        assert!(host("10.0.0.0/33", 1).is_err());
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask("172.16.0.0/12").unwrap(), "255.240.0.0");
        assert_eq!(netmask("10.0.0.0/32").unwrap(), "255.255.255.255");
        assert_eq!(netmask("0.0.0.0/0").unwrap(), "0.0.0.0");
        assert!(netmask("fd00::/8").is_err());
    }

    #[test]
    fn subnets_by_number() {
        assert_eq!(subnet("172.16.0.0/12", 4, 2).unwrap(), "172.18.0.0/16");
        assert_eq!(subnet("10.1.2.0/24", 4, 15).unwrap(), "10.1.2.240/28");
        assert_eq!(
            subnet("fd00:fd12:3456:7890::/56", 16, 162).unwrap(),
            "fd00:fd12:3456:7800:a200::/72"
        );
        assert!(
            subnet("10.1.2.0/24", 4, 16)
                .unwrap_err()
                .contains("numbered 16")
        );
        assert!(
            subnet("10.1.2.0/24", 9, 0)
                .unwrap_err()
                .contains("insufficient")
        );
        assert!(subnet("10.1.2.0/24", 4, -1).is_err());
    }

    #[test]
    fn consecutive_subnets_align_and_never_overlap() {
        assert_eq!(
            subnets("10.1.0.0/16", &[4, 4, 8, 4]).unwrap(),
            [
                "10.1.0.0/20",
                "10.1.16.0/20",
                "10.1.32.0/24",
                "10.1.48.0/20"
            ]
        );
        assert_eq!(
            subnets("fd00:fd12:3456:7890::/56", &[16, 16, 16, 32]).unwrap(),
            [
                "fd00:fd12:3456:7800::/72",
                "fd00:fd12:3456:7800:100::/72",
                "fd00:fd12:3456:7800:200::/72",
                "fd00:fd12:3456:7800:300::/88"
            ]
        );
        assert_eq!(
            subnets("10.0.0.0/30", &[1, 1]).unwrap(),
            ["10.0.0.0/31", "10.0.0.2/31"]
        );
        assert!(subnets("10.0.0.0/30", &[1, 1, 1]).is_err());
        assert_eq!(
            subnets("0.0.0.0/0", &[1, 1]).unwrap(),
            ["0.0.0.0/1", "128.0.0.0/1"]
        );
    }
}
