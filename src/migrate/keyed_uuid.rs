//! The keys of `id_strategy: uuid`: version-4 UUIDs whose 122 random bits come from a keyed
//! pseudo-random function of the legacy key instead of the system's random source, so that
//! no mapping needs to be written down.
//!
//! A new key is the first 16 bytes of SHA-256(secret ‖ LABEL ‖ namespace ‖ 0x00 ‖ "table:legacy
//! key") with the version (4) and variant bits set, where the secret is 32 bytes of the
//! operating system's CSPRNG drawn once per database by the first `uuid` migration
//! (`tenant_ops.id_secret`, readable by the extension owner alone) and `table` the legacy
//! table's qualified name (an oid would not survive a dump and restore; a renamed legacy
//! table gives other keys, as with `uuid5`). That is AMAC (Bellare, Bernstein and Tessaro, "Hash-function based PRFs: AMAC and
//! its multi-user security", Eurocrypt 2016): a secret prefix and a truncated output, a
//! pseudo-random function like HMAC (the 128 bits of SHA-256's state left out are what a
//! length extension would need) at half its cost: secret and label fill SHA-256's first
//! block, whose state is computed once, so a key costs one compression where HMAC takes two
//! (measured in SQL: 0.14 µs a key over the bare loop, `uuid5`'s SHA-1 0.12 µs).
//!
//! To anyone without the secret the keys are as unpredictable, and as unrelated to the legacy
//! keys, as random ones (RFC 9562 §5.4 allows a version-4 UUID's bits to be pseudo-random),
//! and they collide no more often. What computing them buys: the same legacy key in the same
//! namespace always gets the same key, so foreign keys, `map_id`, rollbacks, resumed steps,
//! later tenants' shared rows and an online migration's changes compute a key instead of
//! looking it up. Recording office 1's 405k mappings in `tenant_ops.id_map` (what this
//! strategy did before; `uuid7` still does: its keys carry the time of their making) cost
//! 0.6 s of a 2.7 s migration.
//!
//! Who may compute keys: whoever may run `tenant_ops.uuid4_keyed` (granted like `map_id`, to
//! the viewers, who could read every mapping in `id_map` before). A dump of the database
//! keeps the secret (`pg_extension_config_dump`); losing it (dropping the extension) loses
//! the mappings as dropping `id_map` did.

use std::cell::RefCell;

use pgrx::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{Common, OrRaise};
use crate::sys::owner;

/// The secret's length in bytes (the CHECK on `tenant_ops.id_secret` says the same).
const SECRET_LEN: usize = 32;

/// What follows the secret in the first block: names the purpose (another use of the same
/// secret would take another label), and fills the block to SHA-256's 64 bytes.
const LABEL: &[u8; 32] = b"pg_tenant_ops uuid4_keyed v1\0\0\0\0";

/// SHA-256's state with the secret and the label hashed: the key of the function.
pub type Keyed = Sha256;

/// The key of `name` in `namespace` under the keyed state (see the module comment).
pub fn derive(keyed: &Keyed, namespace: &str, name: &str) -> uuid::Uuid {
    let mut h = keyed.clone();
    h.update(namespace.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The keyed state of `secret` (32 bytes: with the label, exactly one block).
pub fn keyed(secret: &[u8]) -> Keyed {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(LABEL);
    h
}

/// The legacy key's name as the key mapping hashes it: the legacy table's qualified name (as
/// `format('%I.%I')` writes it: what a dump and restore keep, which an oid is not), then the key.
pub fn name(table: &str, legacy_key: &str) -> String {
    format!("{table}:{legacy_key}")
}

thread_local! {
    /// The secret's keyed state, with the start of the transaction it was read in: read once
    /// per transaction (not once per backend: the extension, and with it the secret, may be
    /// dropped and created again while the backend lives).
    static SECRET: RefCell<Option<(pg_sys::TimestampTz, Keyed)>> = const { RefCell::new(None) };
}

/// The secret's keyed state, `None` when this database has none yet (no `uuid` migration ran).
fn secret() -> Option<Keyed> {
    let now = crate::pg::transaction_start();
    if let Some(state) = SECRET.with(|s| {
        s.borrow()
            .as_ref()
            .filter(|(at, _)| *at == now)
            .map(|(_, h)| h.clone())
    }) {
        return Some(state);
    }
    let bytes =
        owner::get_one::<Vec<u8>>("SELECT secret FROM tenant_ops.id_secret", &[]).or_raise()?;
    let state = keyed(&bytes);
    SECRET.with(|s| *s.borrow_mut() = Some((now, state.clone())));
    Some(state)
}

/// The key of `name` in `namespace` (the SQL function `tenant_ops.uuid4_keyed`); an ERROR
/// when the database has no secret yet.
pub fn uuid4_keyed(namespace: &str, name: &str) -> uuid::Uuid {
    match secret() {
        Some(state) => derive(&state, namespace, name),
        None => {
            pgrx::pg_sys::panic::ErrorReport::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "no id_strategy \"uuid\" migration has run in this database: it has no key secret yet",
                "pg_tenant_ops",
            )
            .set_hint("The first migrate_tenant with id_strategy \"uuid\" draws it.")
            .report(PgLogLevel::ERROR);
            unreachable!("an ERROR report does not return")
        }
    }
}

/// The key a `uuid` migration gave (or gives) `legacy_key` of `table` (qualified, quoted)
/// outside a clone, `None` when the database has no secret (or predates it).
pub fn mapped(table: &str, legacy_key: &str) -> Option<uuid::Uuid> {
    crate::pg::regclass("tenant_ops.id_secret")?;
    Some(derive(&secret()?, "", &name(table, legacy_key)))
}

/// Makes sure the database has its secret before a `uuid` migration is queued or run: drawn
/// from the operating system's CSPRNG and stored (as the owner) by the first one. A database
/// whose extension an earlier build of this version created has no place for it (there are
/// no upgrade scripts within a version): refused, with what to do.
pub fn ensure_secret() -> Result<(), Common> {
    if crate::pg::regclass("tenant_ops.id_secret").is_none() {
        return Err(Common::FeatureNotSupported(
            "id_strategy \"uuid\" needs tenant_ops.id_secret, which this database's pg_tenant_ops predates".into(),
            Some("Create the extension again (DROP EXTENSION pg_tenant_ops; CREATE EXTENSION pg_tenant_ops), or use id_strategy \"uuid7\".".into()),
        ));
    }
    let mut secret = [0u8; SECRET_LEN];
    if let Err(e) = getrandom::fill(&mut secret) {
        crate::error::internal_error(format!("could not generate random values: {e}"));
    }
    // Two first migrations at once: the second waits for the first's row, then keeps it.
    let drawn = owner::execute(
        "INSERT INTO tenant_ops.id_secret (secret)
         SELECT $1 WHERE NOT EXISTS (SELECT FROM tenant_ops.id_secret)
         ON CONFLICT DO NOTHING",
        &[secret.to_vec().into()],
    )
    .or_raise();
    if drawn > 0 {
        // A secret read earlier in this transaction (one a rolled-back savepoint drew, or one
        // of an extension dropped since) is not this one.
        SECRET.with(|s| *s.borrow_mut() = None);
    }
    Ok(())
}

/// A `uuid` migration reads its sources on the node that holds its secret: refused (before
/// anything is written) when a table of the scope is a Citus table, whose reads Citus pushes
/// down, key computations included, to the workers, which have no secret or another one.
pub fn check_sources(loaded: &crate::scope::LoadedScope) -> Result<(), Common> {
    if !crate::citus::installed() {
        return Ok(());
    }
    for t in &loaded.resolved.tables {
        if crate::citus::table_type(t.oid) != crate::citus::TableType::Local {
            return Err(Common::FeatureNotSupported(
                format!(
                    "id_strategy \"uuid\" cannot read the Citus table {}",
                    loaded.catalog.table(t.oid).display
                ),
                Some("Its keys are computed with a secret only the coordinator holds, and Citus computes on the workers what it reads there: use id_strategy \"uuid5\" (computed anywhere) or \"uuid7\" (recorded on the coordinator).".into()),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_4_deterministic_and_keyed() {
        let a = keyed(&[7u8; SECRET_LEN]);
        let b = keyed(&[8u8; SECRET_LEN]);
        let x = derive(&a, "", &name("s.t", "42"));
        assert_eq!(x.get_version_num(), 4);
        assert_eq!(x.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(x, derive(&a, "", &name("s.t", "42")));
        // Another secret, key, table or namespace: another key.
        assert_ne!(x, derive(&b, "", &name("s.t", "42")));
        assert_ne!(x, derive(&a, "", &name("s.t", "43")));
        assert_ne!(x, derive(&a, "", &name("s.u", "42")));
        assert_ne!(x, derive(&a, "clone:7", &name("s.t", "42")));
        // The namespace is delimited: ("a", "b…") and ("ab", "…") never meet.
        assert_ne!(derive(&a, "s", ".t:42"), derive(&a, "", "s.t:42"));
    }

    /// Computed outside Rust (Python's hashlib), from the construction as written above.
    const KNOWN_ANSWER: &str = "9067bbaa-f9fb-42c9-b4c5-82bfccfb1d19";

    #[test]
    fn known_answer() {
        // Python: hashlib.sha256(bytes(range(32)) + label + b"clone:7" + b"\0" + b"16384:42")
        // .digest()[:16], with the version and variant bits set as RFC 9562 says.
        let k = keyed(&(0u8..32).collect::<Vec<u8>>());
        assert_eq!(derive(&k, "clone:7", "16384:42").to_string(), KNOWN_ANSWER);
    }
}
