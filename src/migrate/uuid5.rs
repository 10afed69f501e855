//! RFC 4122 name-based UUIDs (version 5, SHA-1), for the `uuid5` id strategy: the same
//! namespace and legacy key always give the same UUID, so a migration can be repeated and
//! foreign keys remapped without lookups.
//!
//! Pure Rust, no pgrx: SHA-1 is implemented here (it is only used to derive identifiers, as
//! RFC 4122 prescribes, never for security).

/// The RFC 4122 namespace for domain names (`6ba7b810-9dad-11d1-80b4-00c04fd430c8`).
pub const NAMESPACE_DNS: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// The RFC 4122 namespace for URLs (`6ba7b811-9dad-11d1-80b4-00c04fd430c8`).
pub const NAMESPACE_URL: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// The RFC 4122 namespace for ISO OIDs (`6ba7b812-9dad-11d1-80b4-00c04fd430c8`).
pub const NAMESPACE_OID: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x12, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// The RFC 4122 namespace for X.500 distinguished names (`6ba7b814-9dad-11d1-80b4-00c04fd430c8`).
pub const NAMESPACE_X500: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x14, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

/// This project's own namespace, `054dc0ce-ae3c-5745-802f-0916979f053f`
/// = `uuid5(NAMESPACE_URL, b"https://pg-tenant-ops.invalid/uuid5")`. Never change it: every
/// UUID a `uuid5` migration wrote without an explicit namespace derives from it.
pub const NAMESPACE_PG_TENANT_OPS: [u8; 16] = [
    0x05, 0x4d, 0xc0, 0xce, 0xae, 0x3c, 0x57, 0x45, 0x80, 0x2f, 0x09, 0x16, 0x97, 0x9f, 0x05, 0x3f,
];

/// The version-5 UUID of `name` in `namespace`: the first 16 bytes of SHA-1(namespace ‖ name),
/// with the version nibble set to 5 and the RFC 4122 variant bits (`10xx`).
pub fn uuid5(namespace: &[u8; 16], name: &[u8]) -> [u8; 16] {
    let mut hasher = Sha1::new();
    hasher.update(namespace);
    hasher.update(name);
    let digest = hasher.finish();
    let mut u = [0u8; 16];
    u.copy_from_slice(&digest[..16]);
    u[6] = (u[6] & 0x0f) | 0x50;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// Parses a UUID written as 32 hex digits, either in the canonical 8-4-4-4-12 grouping or with
/// no hyphens at all, optionally inside `{` `}`; case-insensitive. Anything else is `None`.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = match s.strip_prefix('{') {
        Some(inner) => inner.strip_suffix('}')?,
        None => s,
    };
    let b = s.as_bytes();
    let hex: Vec<u8> = match b.len() {
        32 => b.to_vec(),
        36 => {
            for (i, &c) in b.iter().enumerate() {
                if matches!(i, 8 | 13 | 18 | 23) != (c == b'-') {
                    return None;
                }
            }
            b.iter().copied().filter(|&c| c != b'-').collect()
        }
        _ => return None,
    };
    let mut u = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        u[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(u)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The canonical lowercase form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (what PostgreSQL's
/// `uuid` type prints).
pub fn format_uuid(u: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 0x0f) as usize] as char);
    }
    out
}

/// SHA-1 (FIPS 180-4) of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    hasher.update(data);
    hasher.finish()
}

/// A streaming SHA-1, so that namespace and name are hashed without being concatenated.
struct Sha1 {
    state: [u32; 5],
    block: [u8; 64],
    block_len: usize,
    total_len: u64,
}

impl Sha1 {
    fn new() -> Self {
        Sha1 {
            state: [
                0x6745_2301,
                0xEFCD_AB89,
                0x98BA_DCFE,
                0x1032_5476,
                0xC3D2_E1F0,
            ],
            block: [0; 64],
            block_len: 0,
            total_len: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        self.total_len = self.total_len.wrapping_add(data.len() as u64);
        while !data.is_empty() {
            let take = (64 - self.block_len).min(data.len());
            self.block[self.block_len..self.block_len + take].copy_from_slice(&data[..take]);
            self.block_len += take;
            data = &data[take..];
            if self.block_len == 64 {
                let block = self.block;
                self.compress(&block);
                self.block_len = 0;
            }
        }
    }

    fn finish(mut self) -> [u8; 20] {
        let bit_len = self.total_len.wrapping_mul(8);
        // Padding: 0x80, zeros up to 56 mod 64, then the message length in bits, big-endian.
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let pad_len = if self.block_len < 56 {
            56 - self.block_len
        } else {
            120 - self.block_len
        };
        pad[pad_len..pad_len + 8].copy_from_slice(&bit_len.to_be_bytes());
        let total_len = self.total_len;
        self.update(&pad[..pad_len + 8]);
        self.total_len = total_len;
        debug_assert_eq!(self.block_len, 0);
        let mut out = [0u8; 20];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    fn compress(&mut self, block: &[u8; 64]) {
        let mut w = [0u32; 80];
        for (i, chunk) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = self.state;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (s, v) in self.state.iter_mut().zip([a, b, c, d, e]) {
            *s = s.wrapping_add(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_empty() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn sha1_abc() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn sha1_fox() {
        assert_eq!(
            hex(&sha1(b"The quick brown fox jumps over the lazy dog")),
            "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
        );
    }

    #[test]
    fn sha1_two_blocks_fips_vector() {
        // 56 bytes: the length no longer fits the first block, so padding spills into a second.
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn sha1_multi_block() {
        // 112 bytes (FIPS 180-2 long vector): two full-data blocks plus padding.
        assert_eq!(
            hex(&sha1(
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
            )),
            "a49b2446a02c645bf419f995b67091253a04a259"
        );
    }

    #[test]
    fn sha1_million_a() {
        assert_eq!(
            hex(&sha1(&vec![b'a'; 1_000_000])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn sha1_padding_boundaries() {
        // Lengths around the 55/56/64-byte padding edges (digests from Python's hashlib).
        let cases: [(usize, &str); 7] = [
            (55, "8ae2d46729cfe68ff927af5eec9c7d1b66d65ac2"),
            (56, "636e2ec698dac903498e648bd2f3af641d3c88cb"),
            (63, "6d942da0c4392b123528f2905c713a3ce28364bd"),
            (64, "c6138d514ffa2135bfce0ed0b8fac65669917ec7"),
            (65, "69bd728ad6e13cd76ff19751fde427b00e395746"),
            (119, "41c89d06001bab4ab78736b44efe7ce18ce6ae08"),
            (120, "d3dbd653bd8597b7475321b60a36891278e6a04a"),
        ];
        for (n, want) in cases {
            let data: Vec<u8> = (0..n as u8).collect();
            assert_eq!(hex(&sha1(&data)), want, "length {n}");
        }
    }

    #[test]
    fn sha1_streaming_matches_one_shot() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 % 251) as u8).collect();
        for split in [0, 1, 15, 16, 63, 64, 65, 128, 299, 300] {
            let mut h = Sha1::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finish(), sha1(&data), "split at {split}");
        }
    }

    #[test]
    fn uuid5_python_org_dns() {
        let u = uuid5(&NAMESPACE_DNS, b"python.org");
        assert_eq!(format_uuid(&u), "886313e1-3b8a-5372-9b90-0c9aee199e5d");
    }

    #[test]
    fn uuid5_python_org_url() {
        let u = uuid5(&NAMESPACE_URL, b"http://python.org/");
        assert_eq!(format_uuid(&u), "4c565f0d-3f5a-5890-b41b-20cf47701c5e");
    }

    #[test]
    fn uuid5_sets_version_and_variant() {
        for name in [&b""[..], b"a", b"42", b"\xff\xff\xff\xff"] {
            let u = uuid5(&NAMESPACE_PG_TENANT_OPS, name);
            assert_eq!(u[6] >> 4, 5, "version nibble");
            assert_eq!(u[8] >> 6, 0b10, "RFC 4122 variant");
        }
    }

    #[test]
    fn uuid5_is_deterministic_and_name_sensitive() {
        let a = uuid5(&NAMESPACE_PG_TENANT_OPS, b"doctors:42");
        assert_eq!(a, uuid5(&NAMESPACE_PG_TENANT_OPS, b"doctors:42"));
        assert_ne!(a, uuid5(&NAMESPACE_PG_TENANT_OPS, b"doctors:43"));
        assert_ne!(a, uuid5(&NAMESPACE_URL, b"doctors:42"));
    }

    #[test]
    fn project_namespace_recomputes() {
        assert_eq!(
            uuid5(&NAMESPACE_URL, b"https://pg-tenant-ops.invalid/uuid5"),
            NAMESPACE_PG_TENANT_OPS
        );
        assert_eq!(
            format_uuid(&NAMESPACE_PG_TENANT_OPS),
            "054dc0ce-ae3c-5745-802f-0916979f053f"
        );
    }

    #[test]
    fn rfc_namespaces_format() {
        assert_eq!(
            format_uuid(&NAMESPACE_DNS),
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        );
        assert_eq!(
            format_uuid(&NAMESPACE_URL),
            "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
        );
        assert_eq!(
            format_uuid(&NAMESPACE_OID),
            "6ba7b812-9dad-11d1-80b4-00c04fd430c8"
        );
        assert_eq!(
            format_uuid(&NAMESPACE_X500),
            "6ba7b814-9dad-11d1-80b4-00c04fd430c8"
        );
    }

    #[test]
    fn parse_accepts_canonical_plain_braced_any_case() {
        let want = NAMESPACE_DNS;
        for s in [
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
            "6ba7b8109dad11d180b400c04fd430c8",
            "6BA7b8109dAD11d180b400c04fd430C8",
            "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
            "{6ba7b8109dad11d180b400c04fd430c8}",
        ] {
            assert_eq!(parse_uuid(s), Some(want), "{s}");
        }
    }

    #[test]
    fn parse_rejects_malformed() {
        for s in [
            "",
            "{}",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c", // too short
            "6ba7b810-9dad-11d1-80b4-00c04fd430c80", // too long
            "6ba7b8109-dad-11d1-80b4-00c04fd430c8", // hyphen misplaced
            "6ba7b810-9dad-11d1-80b400c04fd430c8", // one hyphen missing
            "6ba7b810-9dad-11d1-80b4-00c04fd430cg", // not hex
            "6ba7b810+9dad+11d1+80b4+00c04fd430c8", // wrong separator
            "{6ba7b810-9dad-11d1-80b4-00c04fd430c8", // unbalanced brace
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8}", // unbalanced brace
            " 6ba7b810-9dad-11d1-80b4-00c04fd430c8", // whitespace
            "6ba7b8109dad11d180b400c04fd430c8----", // 36 bytes, hyphens in the wrong places
            "6ba7b810-9dad-11d1-80b4-00c04fd430é", // non-ASCII
            "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        ] {
            assert_eq!(parse_uuid(s), None, "{s:?}");
        }
    }

    #[test]
    fn format_parse_round_trip() {
        for name in [&b"x"[..], b"y", b"tenant 7"] {
            let u = uuid5(&NAMESPACE_OID, name);
            let s = format_uuid(&u);
            assert_eq!(s.len(), 36);
            assert_eq!(s, s.to_lowercase());
            assert_eq!(parse_uuid(&s), Some(u));
            assert_eq!(parse_uuid(&s.to_uppercase()), Some(u));
        }
        assert_eq!(
            format_uuid(&[0; 16]),
            "00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            format_uuid(&[0xff; 16]),
            "ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
    }
}
