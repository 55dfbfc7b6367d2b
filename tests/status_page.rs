//! The status page of a real four-node cluster, loaded in headless Chromium
//! (Debian's `chromium`): the DOM must show the four nodes and the charts,
//! including a node that was killed shown as down. Screenshots for a person
//! to look at are saved under target/screenshots/.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::browser;
use common::node::{Cluster, wait_until};

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

/// (hostname, state) of every member card in the rendered DOM.
fn member_cards(dom: &str) -> Vec<(String, String)> {
    dom.split("data-testid=\"member\"")
        .skip(1)
        .map(|card| {
            let head = &card[..card.find('>').unwrap_or(card.len())];
            let attr = |name: &str| {
                head.split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_default()
                    .to_owned()
            };
            (attr("data-hostname"), attr("data-state"))
        })
        .collect()
}

#[test]
fn the_status_page_shows_the_cluster_in_a_real_browser() {
    if browser::chromium_path().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have chromium (scripts/install-deps)"
        );
        eprintln!("skipping: chromium is not installed (scripts/install-deps installs it)");
        return;
    }
    let mut c = Cluster::start_all(10);
    wait_until(Duration::from_secs(5), || {
        let s = c.member_states(0)?;
        (s.iter().filter(|(_, st)| st == "up").count() == 4)
            .then_some(())
            .ok_or(format!("{s:?}"))
    })
    .expect("cluster forms");
    // Two samples at least, so the charts have a line to draw.
    std::thread::sleep(Duration::from_secs(6));
    let url = format!("http://{}/", c.nodes[0].admin);

    let dom = browser::dump_dom(&url, 4000).expect("chromium renders the page");
    let mut cards = member_cards(&dom);
    cards.sort();
    let want: Vec<(String, String)> = (1..=4)
        .map(|i| (format!("pi-{i}"), "up".to_owned()))
        .collect();
    assert_eq!(cards, want, "four member cards, all up");
    assert!(
        dom.contains("data-testid=\"self-hostname\""),
        "header names the node"
    );
    for chart in ["cpu", "memory", "network"] {
        let at = dom
            .find(&format!("data-chart=\"{chart}\""))
            .unwrap_or_else(|| panic!("no {chart} chart"));
        let svg = &dom[at..];
        let svg = &svg[..svg.find("</svg>").unwrap_or(svg.len())];
        assert!(
            svg.contains("<path") && svg.contains(" d=\"M"),
            "{chart} chart draws a line"
        );
    }
    assert!(
        dom.contains("data-testid=\"event\""),
        "recent events listed"
    );

    let shots = screenshots_dir();
    browser::screenshot(&url, &shots.join("cluster-desktop.png"), 1280, 1100, 4000)
        .expect("desktop screenshot");
    browser::screenshot(&url, &shots.join("cluster-phone.png"), 390, 844, 4000)
        .expect("phone screenshot");

    // A killed node is shown as down, not as an error page.
    c.kill(3);
    wait_until(Duration::from_secs(5), || {
        let s = c.member_states(0)?;
        s.iter()
            .any(|(h, st)| h == "pi-4" && st == "down")
            .then_some(())
            .ok_or(format!("{s:?}"))
    })
    .expect("pi-4 down");
    let dom = browser::dump_dom(&url, 4000).expect("render");
    let cards = member_cards(&dom);
    assert!(
        cards.contains(&("pi-4".to_owned(), "down".to_owned())),
        "{cards:?}"
    );
    assert_eq!(cards.len(), 4);
    browser::screenshot(
        &url,
        &shots.join("cluster-desktop-node-down.png"),
        1280,
        1100,
        4000,
    )
    .expect("screenshot");
}
