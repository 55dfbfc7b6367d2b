//! The uid and gid of an OS user, read from `/etc/passwd`. Written by hand
//! on purpose: `getpwnam` in a statically linked glibc binary pulls in NSS,
//! which needs the shared libraries of the exact glibc it was linked with
//! at run time (and its ifunc setup crashed our static armv7 build before
//! `main`). PostgreSQL's account is a local system user created by the
//! Debian package, so `/etc/passwd` is where it is.

/// A passwd file larger than this is not one.
const MAX_PASSWD_BYTES: u64 = 4 << 20;

/// `(uid, gid)` of `name`, `Ok(None)` when there is no such user.
pub fn lookup(name: &str) -> std::io::Result<Option<(u32, u32)>> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open("/etc/passwd")?
        .take(MAX_PASSWD_BYTES)
        .read_to_string(&mut text)?;
    Ok(find(&text, name))
}

/// The entry of `name` in passwd-format `text`.
pub fn find(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        postgres:x:105:111:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n\
        broken:x:notanumber:1::/:/bin/false\n";

    #[test]
    fn finds_the_uid_and_gid_of_a_user() {
        assert_eq!(find(PASSWD, "postgres"), Some((105, 111)));
        assert_eq!(find(PASSWD, "root"), Some((0, 0)));
    }

    #[test]
    fn a_missing_or_broken_entry_is_none() {
        assert_eq!(find(PASSWD, "nobody-here"), None);
        assert_eq!(find(PASSWD, "broken"), None);
        assert_eq!(find(PASSWD, "post"), None);
    }
}
