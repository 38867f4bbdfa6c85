//! Timestamps: milliseconds since the epoch on disk, RFC 3339 in JSON.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How far `Timestamp::advance` moved the clock (0 outside tests).
static OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The one clock: everything else takes `now` from here.
    #[allow(clippy::disallowed_methods)]
    pub fn now() -> Self {
        let ms = chrono::Utc::now().timestamp_millis();
        Timestamp(ms.saturating_add(OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed)))
    }

    /// Moves the clock forward by `secs` for the rest of the process. Tests only: a debug
    /// build started with `RESELLERD_TEST_CLOCK=1` exposes it to the operator (see `lib.rs`),
    /// so expiry is tested without sleeping; a release build never moves it.
    pub fn advance(secs: i64) {
        OFFSET_MS.fetch_add(
            secs.saturating_mul(1000),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Timestamp(t.timestamp_millis()))
            .map_err(|_| {
                format!("invalid timestamp {s:?}: expected RFC 3339, e.g. 2030-01-31T12:00:00Z")
            })
    }

    pub fn plus_secs(self, secs: i64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Days since the epoch, for daily series.
    pub fn date(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .format("%Y-%m-%d")
            .to_string()
    }
}

/// `YYYY-MM-DDTHH:MM:SS.fffZ` with `N - 21` fraction digits (3 or 6: `N` is 24 or 27), the shape
/// chrono's `to_rfc3339_opts` gives for years 0 to 9999, written without the formatting machinery
/// (every listed record and every access line carries one). `None` outside those years.
pub fn write_rfc3339<const N: usize>(
    dt: chrono::DateTime<chrono::Utc>,
    buf: &mut [u8; N],
) -> Option<&str> {
    use chrono::{Datelike, Timelike};
    let digits = N.checked_sub(21).filter(|d| *d == 3 || *d == 6)?;
    let year = u32::try_from(dt.year()).ok().filter(|y| *y <= 9999)?;
    let fraction = match digits {
        3 => dt.timestamp_subsec_millis(),
        _ => dt.timestamp_subsec_micros(),
    };
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, dt.month());
    put(8, 2, dt.day());
    put(11, 2, dt.hour());
    put(14, 2, dt.minute());
    put(17, 2, dt.second().min(59));
    put(20, digits, fraction);
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (N - 1, b'Z'),
    ] {
        buf[i] = c;
    }
    std::str::from_utf8(buf).ok()
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut buf = [0; 24];
            let text = chrono::DateTime::from_timestamp_millis(self.0)
                .and_then(|dt| write_rfc3339(dt, &mut buf));
            match text {
                Some(text) => s.serialize_str(text),
                None => s.serialize_str(&self.to_rfc3339()),
            }
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Timestamp::parse(&s).map_err(serde::de::Error::custom)
        } else {
            i64::deserialize(d).map(Timestamp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_rfc3339_and_round_trips() {
        let t = Timestamp(1_700_000_000_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn the_fast_json_form_matches_chrono() {
        let mut t = -62_167_219_200_000i64; // year 0
        while t < 253_402_300_800_000 {
            // past 9999-12-31
            let ts = Timestamp(t);
            let json = serde_json::to_string(&ts).unwrap();
            assert_eq!(json, format!("\"{}\"", ts.to_rfc3339()), "{t}");
            t += 7_919_999_983; // about 92 days, with every field moving
        }
        for t in [
            -1,
            0,
            999,
            1_700_000_000_123,
            i64::MAX,
            i64::MIN,
            253_402_300_800_000,
        ] {
            let ts = Timestamp(t);
            let json = serde_json::to_string(&ts).unwrap();
            assert_eq!(json, format!("\"{}\"", ts.to_rfc3339()), "{t}");
        }
        let now = chrono::DateTime::from_timestamp_micros(1_764_547_200_123_456).unwrap();
        let mut buf = [0; 27];
        assert_eq!(
            write_rfc3339(now, &mut buf).unwrap(),
            now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
    }
}
