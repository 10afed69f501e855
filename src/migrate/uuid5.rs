//! The `uuid5` id strategy's key mapping: RFC 4122 name-based UUIDs (version 5, SHA-1), so
//! the same namespace and legacy key always give the same UUID, a migration can be repeated
//! and foreign keys remapped without lookups.
//!
//! The hashing, parsing and formatting are the `uuid` crate's; this module owns what is ours:
//! the project's namespace, which spellings of a namespace we accept, and how a migration's
//! namespace is derived from its options. No pgrx here.

use uuid::Uuid;

/// This project's own namespace, `054dc0ce-ae3c-5745-802f-0916979f053f`
/// = `uuid5(NAMESPACE_URL, b"https://pg-tenant-ops.invalid/uuid5")`. Never change it: every
/// UUID a `uuid5` migration wrote without an explicit namespace derives from it.
pub const NAMESPACE_PG_TENANT_OPS: Uuid = Uuid::from_bytes([
    0x05, 0x4d, 0xc0, 0xce, 0xae, 0x3c, 0x57, 0x45, 0x80, 0x2f, 0x09, 0x16, 0x97, 0x9f, 0x05, 0x3f,
]);

/// The version-5 UUID of `name` in `namespace`: the first 16 bytes of SHA-1(namespace ‖ name),
/// with the version nibble set to 5 and the RFC 4122 variant bits (`10xx`) — what
/// `Uuid::new_v5` gives, with RustCrypto's SHA-1, which uses the CPU's SHA instructions.
pub fn uuid5(namespace: &Uuid, name: &[u8]) -> Uuid {
    use sha1::Digest;
    let mut hash = sha1::Sha1::new();
    hash.update(namespace.as_bytes());
    hash.update(name);
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// Parses a UUID written as 32 hex digits, either in the canonical 8-4-4-4-12 grouping or with
/// no hyphens at all, optionally inside `{` `}`; case-insensitive. Anything else is `None`.
///
/// The crate alone would also take `urn:uuid:` and refuse `{` around the plain form; the set
/// accepted here is the one `uuid_namespace` has always accepted, so stored options still parse.
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    let inner = match s.strip_prefix('{') {
        Some(inner) => inner.strip_suffix('}')?,
        None => s,
    };
    // 32: plain, 36: hyphenated; the crate's other forms (braced, URN) are longer.
    if inner.len() != 32 && inner.len() != 36 {
        return None;
    }
    Uuid::try_parse(inner).ok()
}

/// The namespace a `uuid5` migration derives its keys in: the `uuid_namespace` option, else one
/// of the scope's own (so two scopes never collide); a clone (`new_tenant`) derives a namespace
/// of its own below that, so the copy gets fresh keys that are still repeatable.
pub fn migration_namespace(explicit: Option<&Uuid>, scope: &str, new_tenant: Option<&str>) -> Uuid {
    let base = match explicit {
        Some(ns) => *ns,
        None => uuid5(
            &NAMESPACE_PG_TENANT_OPS,
            format!("scope:{scope}").as_bytes(),
        ),
    };
    match new_tenant {
        Some(t) => uuid5(&base, format!("clone:{t}").as_bytes()),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid5_python_org_dns() {
        let u = uuid5(&Uuid::NAMESPACE_DNS, b"python.org");
        assert_eq!(u.to_string(), "886313e1-3b8a-5372-9b90-0c9aee199e5d");
    }

    #[test]
    fn uuid5_python_org_url() {
        let u = uuid5(&Uuid::NAMESPACE_URL, b"http://python.org/");
        assert_eq!(u.to_string(), "4c565f0d-3f5a-5890-b41b-20cf47701c5e");
    }

    enum Name {
        /// `n` bytes `(i * 7) % 251`: lengths that put namespace ‖ name around SHA-1's
        /// 55/56/64-byte padding edges and over several blocks.
        Len(usize),
        Text(&'static str),
    }

    /// Computed by the hand-written SHA-1 this module had before it used the `uuid` crate: the
    /// keys every earlier `uuid5` migration wrote must come out byte for byte the same.
    #[test]
    fn uuid5_same_as_before_the_crate() {
        let cases = [
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(0),
                "7f0b9945-746a-58e7-a562-b4c07ceedf75",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(0),
                "0a68eb57-c88a-5f34-9e9d-27f85e68af4f",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(1),
                "74c7cea9-92ec-50ea-a382-de302dcc063a",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(1),
                "ea39eb3c-fa3b-5c9d-a6a6-e156617bae95",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(38),
                "224360f8-72d9-54ad-b163-9c4c475d5788",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(38),
                "e5f9a3cb-2af1-5ba2-b71d-d234ae69847b",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(39),
                "1e1daafb-ca44-50ea-9a5b-a3808b1bcb08",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(39),
                "c88c7d62-792f-5ea0-a255-65a17aa0e5bd",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(40),
                "bf687580-33bb-53dc-9be8-bb006c578df3",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(40),
                "ca64ca2f-9309-5f79-81c7-b11e20ab168b",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(47),
                "4cc0e489-03ab-5436-be8b-26524766d894",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(47),
                "13ff441d-507a-5219-a50d-8c1f68293b3d",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(48),
                "5787ca67-7a49-52c1-a836-47096cb9153e",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(48),
                "033c60fc-fa90-5de4-9c00-7a2190234279",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(49),
                "40851344-f35c-5fa0-a681-69ee9f047779",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(49),
                "df950001-f007-5f0d-becf-1ac9498c0485",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(103),
                "0404bb9e-4abc-5d36-8f44-787b1c57308a",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(103),
                "9a17532a-f967-5c77-9fce-4f078fe4e73d",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(104),
                "71434660-6b1a-5a3a-a951-739b71b765eb",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(104),
                "a253e794-e19e-5c1d-98cc-328bd49cd8f1",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(105),
                "714d6c04-6d43-5d13-b106-e58d0ce30743",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(105),
                "6f2b19b7-a715-54da-a578-f2dbb6bd062e",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Len(200),
                "7363ad3d-47fd-5d7a-9fa0-95ef3f209a74",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Len(200),
                "8a8a0480-4cc5-5912-9860-d547087c4ec2",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Text(r#"legacy."bıgınt":42"#),
                "0d57dd1c-fc3a-5a87-a01a-37d89cc0b240",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Text(r#"legacy."bıgınt":42"#),
                "1c7dd3b7-3870-5d96-a50e-b81cf420d8db",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Text("scope:dispatch"),
                "75437235-397d-5f96-8ac3-b7c314391654",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Text("scope:dispatch"),
                "9c9657b0-502d-525f-9b17-b9e988ee474e",
            ),
            (
                NAMESPACE_PG_TENANT_OPS,
                Name::Text("clone:77"),
                "55628d99-e7a1-51c0-be9d-38a372a1e1d5",
            ),
            (
                Uuid::NAMESPACE_OID,
                Name::Text("clone:77"),
                "2615876e-c79f-5f93-b723-c8ee24c4711d",
            ),
        ];
        for (ns, name, want) in cases {
            let name: Vec<u8> = match name {
                Name::Len(n) => (0..n).map(|i| (i * 7 % 251) as u8).collect(),
                Name::Text(s) => s.as_bytes().to_vec(),
            };
            assert_eq!(uuid5(&ns, &name).to_string(), want, "{ns} {name:?}");
        }
    }

    #[test]
    fn uuid5_same_as_the_uuid_crate() {
        for n in 0..2000u32 {
            let name = format!("legacy.dispatch_orders:{n}").repeat(1 + n as usize % 5);
            assert_eq!(
                uuid5(&NAMESPACE_PG_TENANT_OPS, name.as_bytes()),
                Uuid::new_v5(&NAMESPACE_PG_TENANT_OPS, name.as_bytes()),
                "{name}"
            );
        }
    }

    #[test]
    fn uuid5_sets_version_and_variant() {
        for name in [&b""[..], b"a", b"42", b"\xff\xff\xff\xff"] {
            let u = *uuid5(&NAMESPACE_PG_TENANT_OPS, name).as_bytes();
            assert_eq!(u[6] >> 4, 5, "version nibble");
            assert_eq!(u[8] >> 6, 0b10, "RFC 4122 variant");
        }
    }

    #[test]
    fn uuid5_is_deterministic_and_name_sensitive() {
        let a = uuid5(&NAMESPACE_PG_TENANT_OPS, b"doctors:42");
        assert_eq!(a, uuid5(&NAMESPACE_PG_TENANT_OPS, b"doctors:42"));
        assert_ne!(a, uuid5(&NAMESPACE_PG_TENANT_OPS, b"doctors:43"));
        assert_ne!(a, uuid5(&Uuid::NAMESPACE_URL, b"doctors:42"));
    }

    #[test]
    fn project_namespace_recomputes() {
        assert_eq!(
            uuid5(&Uuid::NAMESPACE_URL, b"https://pg-tenant-ops.invalid/uuid5"),
            NAMESPACE_PG_TENANT_OPS
        );
        assert_eq!(
            NAMESPACE_PG_TENANT_OPS.to_string(),
            "054dc0ce-ae3c-5745-802f-0916979f053f"
        );
    }

    #[test]
    fn rfc_namespaces_format() {
        assert_eq!(
            Uuid::NAMESPACE_DNS.to_string(),
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
        );
        assert_eq!(
            Uuid::NAMESPACE_URL.to_string(),
            "6ba7b811-9dad-11d1-80b4-00c04fd430c8"
        );
        assert_eq!(
            Uuid::NAMESPACE_OID.to_string(),
            "6ba7b812-9dad-11d1-80b4-00c04fd430c8"
        );
        assert_eq!(
            Uuid::NAMESPACE_X500.to_string(),
            "6ba7b814-9dad-11d1-80b4-00c04fd430c8"
        );
    }

    #[test]
    fn parse_accepts_canonical_plain_braced_any_case() {
        let want = Uuid::NAMESPACE_DNS;
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
            "{{6ba7b810-9dad-11d1-80b4-00c04fd430c8}}", // braces twice
        ] {
            assert_eq!(parse_uuid(s), None, "{s:?}");
        }
    }

    #[test]
    fn format_parse_round_trip() {
        for name in [&b"x"[..], b"y", b"tenant 7"] {
            let u = uuid5(&Uuid::NAMESPACE_OID, name);
            let s = u.to_string();
            assert_eq!(s.len(), 36);
            assert_eq!(s, s.to_lowercase());
            assert_eq!(parse_uuid(&s), Some(u));
            assert_eq!(parse_uuid(&s.to_uppercase()), Some(u));
        }
        assert_eq!(
            Uuid::from_bytes([0; 16]).to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            Uuid::from_bytes([0xff; 16]).to_string(),
            "ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
    }

    #[test]
    fn migration_namespace_derivation() {
        // The scope's own namespace, unless one is given; a clone's below either.
        let scope_ns = migration_namespace(None, "dispatch", None);
        assert_eq!(scope_ns.to_string(), "75437235-397d-5f96-8ac3-b7c314391654");
        let given = Uuid::NAMESPACE_OID;
        assert_eq!(migration_namespace(Some(&given), "dispatch", None), given);
        assert_eq!(
            migration_namespace(Some(&given), "dispatch", Some("77")).to_string(),
            "2615876e-c79f-5f93-b723-c8ee24c4711d"
        );
        assert_eq!(
            migration_namespace(None, "dispatch", Some("77")),
            uuid5(&scope_ns, b"clone:77")
        );
    }
}
