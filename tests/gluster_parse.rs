//! Every captured `gluster` output in tests/fixtures/gluster/ (see its
//! README: GlusterFS 10.3 single-node and three-node captures, failure
//! states included, and outputs published by other projects) parses, byte
//! for byte, to the explicit state the capture shows. A file added to the
//! folder without a line here fails `every_fixture_has_an_expectation`.

use std::path::{Path, PathBuf};

use piha::gluster::heal_count;
use piha::gluster::model::{HealBrick, RunState, VolumeInfo, VolumeStatus};
use piha::gluster::reply::CliError;
use piha::gluster::xml::{Document, document};

const DIR: &str = "tests/fixtures/gluster";

type Check = fn(Result<Document, CliError>);

fn infos(r: Result<Document, CliError>) -> Vec<VolumeInfo> {
    match r {
        Ok(Document::VolumeInfo(v)) => v,
        other => panic!("expected volume info, got {other:?}"),
    }
}

fn statuses(r: Result<Document, CliError>) -> Vec<VolumeStatus> {
    match r {
        Ok(Document::VolumeStatus(v)) => v,
        other => panic!("expected volume status, got {other:?}"),
    }
}

fn heal(r: Result<Document, CliError>) -> Vec<HealBrick> {
    match r {
        Ok(Document::Heal(v)) => v,
        other => panic!("expected heal info, got {other:?}"),
    }
}

fn online(v: &VolumeStatus) -> Vec<bool> {
    v.bricks.iter().map(|b| b.online).collect()
}

fn refused(r: Result<Document, CliError>, errno: i64, words: &str) {
    match r {
        Err(CliError::Refused { op_errno, text }) => {
            assert_eq!(op_errno, errno, "{text}");
            assert!(text.contains(words), "{text}");
        }
        other => panic!("expected a refusal with opErrno {errno}, got {other:?}"),
    }
}

/// The expected state of each file, by name.
fn expectation(name: &str) -> Option<Check> {
    let check: Check = match name {
        "volume-info.xml" => |r| {
            let v = infos(r);
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].state, RunState::Started);
            assert_eq!((v[0].replica_count, v[0].bricks.len()), (3, 3));
            assert_eq!(v[0].bricks[1].name(), "vm:/srv/b2");
        },
        "volume-info-stopped.xml" => |r| assert_eq!(infos(r)[0].state, RunState::Stopped),
        "volume-status-detail-all-up.xml" => |r| {
            let v = statuses(r);
            assert_eq!(online(&v[0]), [true, true, true]);
            let b = &v[0].bricks[0];
            assert!(b.pid.is_some() && b.port.is_some());
            assert!(b.space.size_free.is_some() && b.space.inodes_free.is_some());
        },
        "volume-status-detail-one-brick-down.xml" => |r| {
            let v = statuses(r);
            assert_eq!(online(&v[0]), [true, false, true]);
            assert_eq!((v[0].bricks[1].pid, v[0].bricks[1].port), (None, None));
        },
        "volume-status-all-one-brick-down.xml" => |r| {
            // Without `detail`: no space figures, and the self-heal daemons
            // are not bricks.
            let v = statuses(r);
            assert_eq!(online(&v[0]), [true, false, true]);
            assert_eq!(v[0].bricks[0].space.size_free, None);
        },
        "volume-status-stopped.xml" => |r| refused(r, 30800, "is not started"),
        "volume-stop.xml" => |r| assert_eq!(r, Ok(Document::Done)),
        "heal-info-summary-all-up.xml" => |r| {
            let h = heal(r);
            assert!(h.iter().all(|b| b.connected && b.pending == Some(0)));
        },
        "heal-info-summary-one-brick-down.xml" => |r| {
            let h = heal(r);
            let down: Vec<_> = h.iter().filter(|b| !b.connected).collect();
            assert_eq!(down.len(), 1, "{h:?}");
            // The malformed status text carries no count we believe.
            assert_eq!(down[0].pending, None);
        },
        "peer-status.xml" => |r| assert_eq!(r, Ok(Document::Peers(vec![]))),
        "pool-list.xml" => |r| match r {
            Ok(Document::Peers(p)) => assert!(p.len() == 1 && p[0].is_self && p[0].connected),
            other => panic!("{other:?}"),
        },
        "error-volume-info-nosuchvol.xml" | "lab10.3__error__volume_info_nosuchvol.xml" => {
            |r| refused(r, 30806, "does not exist")
        }
        "error-glusterd-down.out" | "lab10.3__glusterd_down_local__volume_info.NOT_XML.out.txt" => {
            |r| assert!(matches!(r, Err(CliError::GlusterdDown { .. })), "{r:?}")
        }
        "lab10.3__glusterd_hung_local_default__volume_info.NOT_XML.out.txt"
        | "lab10.3__glusterd_hung_local_timeout5__volume_info.NOT_XML.out.txt"
        | "lab10.3__peer_glusterd_hung__volume_status_gv0.NOT_XML.out.txt" => {
            // The valid "0 volumes" document after the error line is a lie.
            |r| assert_eq!(r, Err(CliError::RequestTimedOut))
        }
        "lab10.3__stale_lock_after_peer_hang__volume_status_gv0_detail.xml" => |r| match r {
            Err(e @ CliError::Busy { .. }) => assert!(e.retryable()),
            other => panic!("expected busy, got {other:?}"),
        },
        "lab10.3__error__volume_heal_gvdist_info_not_replicate.xml"
        | "lab10.3__healthy__volume_heal_gvdist_info_summary.xml" => {
            |r| refused(r, 22, "replicate/disperse")
        }
        "lab10.3__error__volume_heal_gvnew_info_summary_not_started.xml" => {
            |r| refused(r, 5, "Not able to fetch volfile")
        }
        "lab10.3__error__volume_status_nosuchvol_detail.xml" => {
            |r| refused(r, 30800, "does not exist")
        }
        "lab10.3__healthy__volume_status_gvnew_detail.xml" => |r| refused(r, 30800, "not started"),
        "lab10.3__healthy__volume_info.xml" => |r| {
            let v = infos(r);
            let names: Vec<_> = v.iter().map(|v| v.name.as_str()).collect();
            assert_eq!(names, ["gv0", "gvarb", "gvdist", "gvnew"]);
            assert_eq!(v[1].arbiter_count, 1);
            assert!(v[1].bricks[2].arbiter && !v[1].bricks[0].arbiter);
            assert_eq!((v[2].set_size(), v[2].heals()), (1, false));
            assert_eq!(v[3].state, RunState::Created);
            assert_eq!(
                v[0].options.get("nfs.disable").map(String::as_str),
                Some("on")
            );
        },
        "lab10.3__nodedown__volume_info.xml" => |r| {
            // volume info still lists every brick of the dead node.
            assert_eq!(infos(r)[0].bricks.len(), 3);
        },
        "lab10.3__healthy__volume_list.xml" => |r| {
            assert_eq!(
                r,
                Ok(Document::VolumeList(
                    ["gv0", "gvarb", "gvdist", "gvnew"]
                        .map(String::from)
                        .to_vec()
                ))
            )
        },
        "lab10.3__healthy__volume_status_all.xml"
        | "lab10.3__healthy__volume_status_all_detail.xml" => |r| {
            let v = statuses(r);
            let names: Vec<_> = v.iter().map(|v| v.name.as_str()).collect();
            assert_eq!(names, ["gv0", "gvarb", "gvdist"]);
            assert!(v.iter().all(|v| online(v) == [true, true, true]));
        },
        "lab10.3__healthy__volume_status_gv0_detail.xml" => {
            |r| assert_eq!(online(&statuses(r)[0]), [true, true, true])
        }
        "lab10.3__brickdown__volume_status_gv0_detail.xml"
        | "lab10.3__brickdown__volume_status_gv0.xml" => {
            |r| assert_eq!(online(&statuses(r)[0]), [true, true, false])
        }
        "lab10.3__brickdown__volume_status_all_detail.xml" => |r| {
            let v = statuses(r);
            assert_eq!(online(&v[0]), [true, true, false]);
            assert_eq!(online(&v[1]), [true, true, true]);
        },
        "lab10.3__nodedown__volume_status_all_detail.xml"
        | "lab10.3__nodedown__volume_status_gv0.xml" => {
            // The dead node's bricks are not "offline": they are missing.
            |r| assert_eq!(online(&statuses(r)[0]), [true, true])
        }
        "lab10.3__concurrent_empty__volume_status_all_detail.xml" => {
            // opRet 0 and no volume: the monitor must not believe it.
            |r| assert_eq!(statuses(r), [])
        }
        "lab10.3__concurrent_partial__volume_status_all_detail.xml" => |r| {
            let v = statuses(r);
            assert_eq!(v.len(), 1, "one of three volumes listed: {v:?}");
        },
        "lab10.3__brickdown__volume_heal_gv0_info_summary.xml"
        | "lab10.3__nodedown__volume_heal_gv0_info_summary.xml" => |r| {
            let h = heal(r);
            let pending: Vec<_> = h.iter().map(|b| b.pending).collect();
            assert_eq!(pending, [Some(44), Some(44), None]);
            assert!(!h[2].connected);
        },
        "lab10.3__brickdown3000__volume_heal_gv0_info_summary.xml" => |r| {
            let pending: Vec<_> = heal(r).iter().map(|b| b.pending).collect();
            assert_eq!(pending, [Some(3002), Some(3002), None]);
        },
        "lab10.3__healing__volume_heal_gv0_info_summary.xml" => |r| {
            let h = heal(r);
            assert!(h.iter().all(|b| b.connected), "{h:?}");
            assert!(h[0].pending.is_some_and(|p| p > 0));
        },
        "lab10.3__brickdown__volume_heal_gv0_info.xml" => |r| {
            let totals: Vec<_> = heal(r).iter().map(|b| b.total).collect();
            assert_eq!(totals, [Some(44), Some(44), None]);
        },
        "lab10.3__healthy__volume_heal_gv0_info.xml"
        | "lab10.3__healthy__volume_heal_gv0_info_split-brain.xml" => {
            |r| assert!(heal(r).iter().all(|b| b.connected && b.total == Some(0)))
        }
        "lab10.3__healthy__volume_heal_gv0_info_summary.xml"
        | "lab10.3__healthy__volume_heal_gvarb_info_summary.xml" => |r| {
            assert!(
                heal(r)
                    .iter()
                    .all(|b| b.pending == Some(0) && b.split_brain == Some(0))
            )
        },
        "lab10.3__healthy__peer_status.xml" | "lab10.3__healthy__pool_list.xml" => |r| match r {
            Ok(Document::Peers(p)) => assert!(p.iter().all(|p| p.connected)),
            other => panic!("{other:?}"),
        },
        "lab10.3__nodedown__peer_status.xml" | "lab10.3__nodedown__pool_list.xml" => |r| match r {
            Ok(Document::Peers(p)) => {
                let down: Vec<_> = p.iter().filter(|p| !p.connected).collect();
                assert_eq!(down.len(), 1);
                assert_eq!(down[0].hostname, "pi-storage3");
            }
            other => panic!("{other:?}"),
        },
        "cholcombe973-gluster-crate__volume_info.xml" => |r| {
            let v = infos(r);
            assert_eq!((v[0].bricks.len(), v[0].set_size()), (24, 3));
            assert_eq!(v[0].bricks[0].name(), "10.144.73.12:/mnt/sdb/brick");
        },
        "ofesseler__gluster_volume_info.xml" => |r| assert!(!infos(r).is_empty()),
        "ofesseler__gluster_volume_list.xml" => {
            |r| assert!(matches!(r, Ok(Document::VolumeList(v)) if v.len() == 2))
        }
        "ofesseler__gluster_peer_status.xml" => {
            |r| assert!(matches!(r, Ok(Document::Peers(p)) if !p.is_empty()))
        }
        "ofesseler__gluster_volume_status_all_detail.xml" => |r| {
            // An older gluster: no inode counts.
            let v = statuses(r);
            assert_eq!(v[0].bricks[0].space.inodes_free, None);
            assert!(v[0].bricks[0].space.size_free.is_some());
        },
        "ofesseler__gluster_volume_heal_info.xml" => {
            |r| assert!(heal(r).iter().all(|b| b.connected && b.total == Some(0)))
        }
        "ofesseler__gluster_volume_heal_info_err_node1.xml"
        | "ofesseler__gluster_volume_heal_info_err_node2.xml" => |r| {
            // numberOfEntries "-" for a dead node: unknown, not zero.
            let h = heal(r);
            assert!(h.iter().any(|b| !b.connected && b.total.is_none()));
            assert!(h.iter().any(|b| b.connected && b.total.is_some()));
        },
        "ofesseler__gluster_volume_profile_gv_test_info.xml"
        | "ofesseler__gluster_volume_profile_gv_test_info_cumulative.xml"
        | "ofesseler__gluster_volume_quota_list.xml" => |r| assert_eq!(r, Ok(Document::Done)),
        _ => return None,
    };
    Some(check)
}

fn fixture_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from(DIR)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixture folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n != "README.md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("file name")
}

#[test]
fn every_fixture_has_an_expectation() {
    let files = fixture_files();
    assert!(files.len() >= 50, "fixtures missing: {files:?}");
    let missing: Vec<_> = files
        .iter()
        .filter(|p| !name(p).contains("heal-count"))
        .filter(|p| expectation(name(p)).is_none())
        .collect();
    assert!(missing.is_empty(), "no expectation for {missing:?}");
}

#[test]
fn every_fixture_parses_to_its_state() {
    for path in fixture_files() {
        let Some(check) = expectation(name(&path)) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("fixture");
        // The captures of failures exited 1; the XML ones 0 (even on opRet -1).
        let exit = if name(&path).contains("NOT_XML") || name(&path).ends_with(".out") {
            Some(1)
        } else {
            Some(0)
        };
        let result = std::panic::catch_unwind(|| check(document(&text, exit)));
        assert!(
            result.is_ok(),
            "{} did not parse as expected",
            path.display()
        );
    }
}

#[test]
fn heal_count_text_keeps_a_dead_brick_unknown() {
    let path = format!(
        "{DIR}/multinode/lab10.3__brickdown3000__volume_heal_gv0_statistics_heal-count__NOT_XML.txt"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    let counts = heal_count::parse(&text, Some(0)).expect("heal-count");
    let entries: Vec<_> = counts.iter().map(|c| c.entries).collect();
    assert_eq!(entries, [Some(3002), Some(3002), None]);
    assert_eq!(counts[2].brick, "pi-storage3:/mnt/gluster/gv0");
}

#[test]
fn heal_count_errors_are_not_zero() {
    let down = "Connection failed. Please check if gluster daemon is operational.\n";
    assert!(matches!(
        heal_count::parse(down, Some(1)),
        Err(CliError::GlusterdDown { .. })
    ));
    let bad = "Gathering count of entries to be healed on volume gv0 has been successful\n\nBrick a:/b\nNumber of entries: many\n";
    assert!(matches!(
        heal_count::parse(bad, Some(0)),
        Err(CliError::Malformed { .. })
    ));
    let refused = "<?xml version=\"1.0\"?><cliOutput><opRet>-1</opRet><opErrno>2</opErrno><opErrstr>Volume gvdist is not of type replicate</opErrstr></cliOutput>";
    assert!(matches!(
        heal_count::parse(refused, Some(0)),
        Err(CliError::Refused { .. })
    ));
}

#[test]
fn damaged_documents_get_errors_naming_what_was_wrong() {
    let base =
        std::fs::read_to_string(format!("{DIR}/volume-status-detail-all-up.xml")).expect("fixture");
    // A number that is not one.
    let bad = base.replacen("<sizeFree>", "<sizeFree>12x", 1);
    let err = document(&bad, Some(0)).expect_err("bad number");
    assert!(err.to_string().contains("sizeFree"), "{err}");
    // Cut short.
    let cut = &base[..base.len() / 2];
    assert!(matches!(
        document(cut, Some(0)),
        Err(CliError::Malformed { .. })
    ));
    // A volume count that disagrees with the list.
    let info =
        std::fs::read_to_string(format!("{DIR}/multinode/lab10.3__healthy__volume_info.xml"))
            .expect("fixture");
    let lying = info.replace("<count>4</count>", "<count>5</count>");
    assert!(matches!(
        document(&lying, Some(0)),
        Err(CliError::Inconsistent { .. })
    ));
    // Too big.
    let huge = format!(
        "<cliOutput>{}</cliOutput>",
        " ".repeat(piha::gluster::xml::MAX_XML)
    );
    assert!(matches!(
        document(&huge, Some(0)),
        Err(CliError::Malformed { .. })
    ));
}

#[test]
fn heal_launch_is_read_from_its_text() {
    use piha::gluster::xml::heal_launched;
    let ok = "Launching heal operation to perform index self heal on volume piha has been successful \nUse heal info commands to check status.\n";
    assert_eq!(heal_launched(ok, Some(0)), Ok(()));
    let busy = "Launching heal operation to perform index self heal on volume piha has been unsuccessful:\nAnother transaction is in progress for piha. Please try again after some time.\n";
    assert!(heal_launched(busy, Some(0)).is_err_and(|e| e.retryable()));
    let other = "Launching heal operation to perform index self heal on volume piha has been unsuccessful:\nSelf-heal daemon is not running.\n";
    assert!(matches!(
        heal_launched(other, Some(0)),
        Err(CliError::Refused { .. })
    ));
    let down = "Connection failed. Please check if gluster daemon is operational.\n";
    assert!(matches!(
        heal_launched(down, Some(1)),
        Err(CliError::GlusterdDown { .. })
    ));
}
