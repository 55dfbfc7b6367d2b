//! The Postgres pooler end to end: a real piha node in front of a real
//! primary and two streaming standbys (see tests/common/pooler.rs).

mod common;

use common::pooler::PoolerRig;

/// Nets 127.61.30-39 belong to the pooler tests.
#[test]
fn psql_and_pgbench_work_through_the_pooler_in_both_modes() {
    let rig = PoolerRig::start(30, 0, "");
    assert_eq!(rig.psql("SELECT current_user"), "app");
    let init = rig.pgbench(&["-i", "-s", "1", "-q"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    for mode in ["simple", "extended", "prepared"] {
        for script in [&["-S"][..], &[][..]] {
            let mut args = vec!["-n", "-c", "8", "-j", "2", "-t", "200", "-M", mode];
            args.extend_from_slice(script);
            let out = rig.pgbench(&args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("number of failed transactions: 0"),
                "pgbench -M {mode} {script:?}: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("number of transactions actually processed: 1600/1600"),
                "{stdout}"
            );
        }
    }
}
