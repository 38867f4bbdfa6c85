//! Time-ordered identifiers (ULID layout, lowercase Crockford base32): listing a tree by key
//! lists by creation time (a range scan of a tree is a list by creation).

use rand::RngCore;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new 26-character id: 48 bits of milliseconds since the epoch, then 80 random bits.
pub fn new_id() -> String {
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    encode(super::Timestamp::now(), random)
}

/// The smallest id of the millisecond `at`: every id made before `at` sorts before it.
pub fn id_floor(at: super::Timestamp) -> String {
    encode(at, [0; 10])
}

fn encode(at: super::Timestamp, random: [u8; 10]) -> String {
    let millis = at.0.max(0) as u128;
    let mut value: u128 = millis << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= (*byte as u128) << (8 * (9 - i));
    }
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (25 - i);
        *slot = ALPHABET[((value >> shift) & 0x1f) as usize];
    }
    out.iter().map(|b| *b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_sort_by_time() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert_eq!(a.len(), 26);
        assert!(a < b, "{a} should sort before {b}");
        assert_ne!(new_id(), new_id());
    }
}
