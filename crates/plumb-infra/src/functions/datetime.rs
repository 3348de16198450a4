//! Date and time functions: `formatdate`, `timeadd` and `timestamp`, over
//! RFC 3339 timestamps that keep the offset they were written in, with the
//! language's date format verbs.

use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp, Zoned};
use plumb_tfplugin::Value;

use super::builtin::{CallContext, Function, FunctionError, arity, text};

/// The date and time functions.
pub const FUNCTIONS: &[Function] = &[
    Function::known("formatdate", formatdate_function),
    Function::known("timeadd", timeadd_function),
    Function::known("timestamp", timestamp_function),
];

fn formatdate_function(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    Ok(Value::String(formatdate(
        &text(&args[0])?,
        &text(&args[1])?,
    )?))
}

fn timeadd_function(args: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    arity(args, 2)?;
    Ok(Value::String(timeadd(&text(&args[0])?, &text(&args[1])?)?))
}

/// The current time; it ignores its arguments.
fn timestamp_function(_: &[Value], _: &CallContext<'_>) -> Result<Value, FunctionError> {
    Ok(Value::String(plumb_state::now_rfc3339()))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// An RFC 3339 timestamp in the offset it was written with.
fn parse(text: &str) -> Result<Zoned, String> {
    let bad = || format!("{text:?} is not a valid RFC 3339 timestamp");
    let b = text.as_bytes();
    let shape = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    if !shape {
        return Err(bad());
    }
    let ts: Timestamp = text.parse().map_err(|_| bad())?;
    let offset = if text.ends_with(['Z', 'z']) {
        Offset::UTC
    } else {
        let tail = text.get(text.len() - 6..).ok_or_else(bad)?;
        let sign = match tail.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(bad()),
        };
        let h: i32 = tail[1..3].parse().map_err(|_| bad())?;
        let m: i32 = tail[4..6].parse().map_err(|_| bad())?;
        Offset::from_seconds(sign * (h * 3600 + m * 60)).map_err(|_| bad())?
    };
    Ok(ts.to_zoned(TimeZone::fixed(offset)))
}

fn rfc3339(z: &Zoned) -> String {
    let secs = z.offset().seconds();
    let zone = if secs == 0 {
        "Z".to_string()
    } else {
        let sign = if secs < 0 { '-' } else { '+' };
        let a = secs.abs();
        format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        z.year(),
        z.month(),
        z.day(),
        z.hour(),
        z.minute(),
        z.second()
    )
}

/// `formatdate(spec, timestamp)`.
fn formatdate(spec: &str, timestamp: &str) -> Result<String, String> {
    let z = parse(timestamp)?;
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted literal text; '' is a quote.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => return Err("unterminated quoted literal in the date format".into()),
                    Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                        out.push('\'');
                        j += 2;
                    }
                    Some('\'') => break,
                    Some(ch) => {
                        out.push(*ch);
                        j += 1;
                    }
                }
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        let verb: String = std::iter::repeat_n(c, n).collect();
        out.push_str(&verb_value(&verb, &z)?);
        i += n;
    }
    Ok(out)
}

fn verb_value(verb: &str, z: &Zoned) -> Result<String, String> {
    let month = MONTHS[(z.month() - 1) as usize];
    let weekday = WEEKDAYS[z.weekday().to_sunday_zero_offset() as usize];
    let hour12 = match z.hour() % 12 {
        0 => 12,
        h => h,
    };
    let secs = z.offset().seconds();
    let (sign, abs) = (if secs < 0 { '-' } else { '+' }, secs.abs());
    let (oh, om) = (abs / 3600, abs % 3600 / 60);
    Ok(match verb {
        "YYYY" => format!("{:04}", z.year()),
        "YY" => format!("{:02}", z.year().rem_euclid(100)),
        "MMMM" => month.to_string(),
        "MMM" => month[..3].to_string(),
        "MM" => format!("{:02}", z.month()),
        "M" => z.month().to_string(),
        "DD" => format!("{:02}", z.day()),
        "D" => z.day().to_string(),
        "EEEE" => weekday.to_string(),
        "EEE" => weekday[..3].to_string(),
        "hh" => format!("{:02}", z.hour()),
        "h" => z.hour().to_string(),
        "HH" => format!("{hour12:02}"),
        "H" => hour12.to_string(),
        "AA" => if z.hour() < 12 { "AM" } else { "PM" }.to_string(),
        "aa" => if z.hour() < 12 { "am" } else { "pm" }.to_string(),
        "mm" => format!("{:02}", z.minute()),
        "m" => z.minute().to_string(),
        "ss" => format!("{:02}", z.second()),
        "s" => z.second().to_string(),
        "ZZZZZ" => format!("{sign}{oh:02}:{om:02}"),
        "ZZZZ" => format!("{sign}{oh:02}{om:02}"),
        "ZZZ" if secs == 0 => "UTC".to_string(),
        "ZZZ" => format!("{sign}{oh:02}{om:02}"),
        "Z" if secs == 0 => "Z".to_string(),
        "Z" => format!("{sign}{oh:02}:{om:02}"),
        other => {
            return Err(format!(
                "invalid date format verb {other:?}; put literal letters in single quotes"
            ));
        }
    })
}

/// A duration in the language's form: a sequence of numbers with units
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), optionally signed: `1h30m`, `-10s`.
fn duration(text: &str) -> Result<SignedDuration, String> {
    let bad = || format!("{text:?} is not a duration (for example \"1h30m\" or \"-10s\")");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut nanos: i128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        nanos += (number * scale).round() as i128;
    }
    let nanos = i64::try_from(if negative { -nanos } else { nanos }).map_err(|_| bad())?;
    Ok(SignedDuration::from_nanos(nanos))
}

/// `timeadd(timestamp, duration)`.
fn timeadd(timestamp: &str, by: &str) -> Result<String, String> {
    let z = parse(timestamp)?;
    let d = duration(by)?;
    let later = z
        .timestamp()
        .checked_add(d)
        .map_err(|e| format!("{timestamp} plus {by} is out of range: {e}"))?;
    Ok(rfc3339(&later.to_zoned(z.time_zone().clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_verbs() {
        let t = "2018-01-02T23:12:01Z";
        assert_eq!(
            formatdate("DD MMM YYYY hh:mm ZZZ", t).unwrap(),
            "02 Jan 2018 23:12 UTC"
        );
        assert_eq!(
            formatdate("EEEE, DD-MMM-YY hh:mm:ss ZZZ", t).unwrap(),
            "Tuesday, 02-Jan-18 23:12:01 UTC"
        );
        assert_eq!(
            formatdate("EEE, DD MMM YYYY hh:mm:ss ZZZ", "2018-01-02T23:12:01-08:00").unwrap(),
            "Tue, 02 Jan 2018 23:12:01 -0800"
        );
        assert_eq!(formatdate("MMM D, YYYY", t).unwrap(), "Jan 2, 2018");
        assert_eq!(formatdate("H:mmaa", t).unwrap(), "11:12pm");
        assert_eq!(formatdate("H AA", "2018-01-02T00:05:00Z").unwrap(), "12 AM");
        assert_eq!(
            formatdate("M/D h:m:s Z", "2018-03-04T05:06:07+05:30").unwrap(),
            "3/4 5:6:7 +05:30"
        );
        assert_eq!(formatdate("ZZZZZ ZZZZ Z", t).unwrap(), "+00:00 +0000 Z");
        assert_eq!(
            formatdate("'at' hh 'o''clock' ''", t).unwrap(),
            "at 23 o'clock '"
        );
        assert_eq!(formatdate("MMMM", t).unwrap(), "January");
    }

    #[test]
    fn bad_formats_and_timestamps() {
        assert!(
            formatdate("YYYYY", "2018-01-02T23:12:01Z")
                .unwrap_err()
                .contains("YYYYY")
        );
        assert!(formatdate("day Q", "2018-01-02T23:12:01Z").is_err());
        assert!(formatdate("'open", "2018-01-02T23:12:01Z").is_err());
        assert!(
            formatdate("YYYY", "2018-01-02")
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(formatdate("YYYY", "2018-01-02 23:12:01Z").is_err());
    }

    #[test]
    fn adding_durations_keeps_the_offset() {
        for (time, duration, want) in [
            ("2017-11-22T00:00:00Z", "10m", "2017-11-22T00:10:00Z"),
            ("2017-11-22T00:00:00Z", "-1h30m", "2017-11-21T22:30:00Z"),
            (
                "2017-11-22T23:30:00+01:00",
                "1h",
                "2017-11-23T00:30:00+01:00",
            ),
            ("2020-02-28T12:00:00Z", "24h", "2020-02-29T12:00:00Z"),
            ("2020-02-28T12:00:00Z", "1.5h", "2020-02-28T13:30:00Z"),
            ("2020-02-28T12:00:00Z", "0", "2020-02-28T12:00:00Z"),
        ] {
            assert_eq!(
                timeadd(time, duration).unwrap(),
                want,
                "{time} + {duration}"
            );
        }
        assert!(timeadd("2020-02-28T12:00:00Z", "3d").is_err());
        assert!(timeadd("2020-02-28T12:00:00Z", "").is_err());
    }
}
