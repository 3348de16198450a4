//! The web UI in real headless Chromium (WebDriver through Debian's
//! chromedriver), against an agent on the real control plane and real Git
//! repositories. Screenshots of every step go to `target/browser-screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::browser::{Browser, Scheme};
use common::*;
use fantoccini::Locator;
use fantoccini::key::Key;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use plumb_server::AuthMode;
use plumb_testenv::git::GitRepo;
use plumb_testenv::testenv;
use serde_json::json;

const STEP: Duration = Duration::from_secs(30);

async fn value(cms: &Api<ConfigMap>, name: &str) -> Option<String> {
    cms.get_opt(name)
        .await
        .unwrap()
        .and_then(|c| c.data)
        .and_then(|d| d.get("value").cloned())
}

async fn wait_value(cms: &Api<ConfigMap>, name: &str, want: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let v = value(cms, name).await;
        if v.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: want {want:?}, cluster has {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in(b: &Browser, s: &Served, token: &str) {
    b.client.goto(&s.url("/")).await.unwrap();
    // Strangers land on the login form.
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.path(), "/login");
    let input = b.client.find(Locator::Css("#token")).await.unwrap();
    input.send_keys(token).await.unwrap();
    b.click("#sign-in").await;
    b.client
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css("#list-page"))
        .await
        .unwrap();
    assert!(
        !b.client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains(token),
        "the token must never be in a URL"
    );
}

#[tokio::test]
async fn drift_diff_sync_and_rollback_in_the_browser() {
    let ns = testenv().namespace("ui-flow").await;
    let cms: Api<ConfigMap> = Api::namespaced(testenv().client().await, ns.name());
    let repo = GitRepo::new();
    repo.write("app/settings.yaml", cm("settings", "v1"));
    let c1 = repo.commit("first version");
    let f = Fixture::new();
    // Automated, without self-heal: drift is shown, not reverted.
    f.write_app(
        "shop.yaml",
        &application("shop", &repo, "app", ns.name(), AUTO_NO_HEAL),
    );
    let s = Served::start(f.config(), AuthMode::Tokens).await;
    wait_for(&s.agent, "shop", "first sync", STEP, synced_at(&c1)).await;
    repo.write("app/settings.yaml", cm("settings", "v2"));
    let c2 = repo.commit("second version");
    s.agent.refresh("shop").unwrap();
    wait_for(&s.agent, "shop", "second sync", STEP, synced_at(&c2)).await;
    wait_value(&cms, "settings", "v2").await;

    let b = Browser::start("flow", Scheme::Light).await;

    // Log in.
    sign_in(&b, &s, &s.admin).await;
    let key = format!("{}/shop", ns.name());
    let row = format!("tr[data-key='{key}'] [data-field=sync]");
    let row = row.as_str();
    b.wait_text(row, "Synced in the list", STEP, |t| t == "Synced")
        .await;
    b.shot("1-list").await;

    // Edit the object in the cluster: the row turns OutOfSync, without a reload.
    b.js("window.plumbTestMarker = 'still here'; return null;")
        .await;
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"value": "tampered"}})),
    )
    .await
    .unwrap();
    b.wait_text(row, "OutOfSync in the list", STEP, |t| t == "OutOfSync")
        .await;
    assert_eq!(
        b.js("return window.plumbTestMarker || null;").await,
        json!("still here"),
        "the list must update in place, not reload"
    );
    b.shot("2-drift").await;

    // Open the Application and its diff: the changed field, both values.
    b.click(&format!("tr[data-key='{key}'] td.name a")).await;
    let field = b
        .wait_text("#diff tr.changed-field", "the changed field", STEP, |t| {
            t.contains("data.value")
        })
        .await;
    assert!(
        field.contains("tampered") && field.contains("v2"),
        "{field}"
    );
    let udiff = b
        .client
        .find(Locator::Css("#diff pre.udiff"))
        .await
        .unwrap()
        .html(true)
        .await
        .unwrap();
    assert!(
        udiff.contains("class=\"del\">-  value: tampered"),
        "{udiff}"
    );
    assert!(udiff.contains("class=\"add\">+  value: v2"), "{udiff}");
    assert_eq!(
        b.wait_text("#app-sync", "OutOfSync", STEP, |t| !t.is_empty())
            .await,
        "OutOfSync"
    );
    let kinds = b
        .client
        .find(Locator::Css(".objects details.kind summary"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        kinds.contains("ConfigMap") && kinds.contains("OutOfSync"),
        "{kinds}"
    );
    b.shot("3-diff").await;

    // Sync: a dry-run preview first, then the real thing.
    b.click("#btn-sync").await;
    let summary = b
        .wait_text("#sync-summary", "the dry-run preview", STEP, |t| {
            t.contains("would")
        })
        .await;
    assert!(summary.contains("1 configured"), "{summary}");
    assert_eq!(
        value(&cms, "settings").await.as_deref(),
        Some("tampered"),
        "a preview changes nothing"
    );
    b.shot("4-sync-preview").await;
    b.click("#sync-confirm").await;
    b.wait_text("#app-sync", "Synced after the sync", STEP, |t| {
        t == "Synced"
    })
    .await;
    wait_value(&cms, "settings", "v2").await;
    b.wait_text("#diff", "an empty diff", STEP, |t| t.contains("equals Git"))
        .await;
    b.shot("5-synced").await;

    // Roll back to the first commit, after confirming; the cluster follows.
    let button = format!("button.rollback[data-revision='{c1}']");
    b.wait_text(
        &button,
        "a rollback button for the first commit",
        STEP,
        |t| t.starts_with("Roll back"),
    )
    .await;
    b.click(&button).await;
    let what = b
        .wait_text("#rollback-what", "the confirmation", STEP, |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        what.contains("first version") && what.contains(&c1[..7]),
        "{what}"
    );
    assert_eq!(
        value(&cms, "settings").await.as_deref(),
        Some("v2"),
        "nothing happens before confirming"
    );
    b.shot("6-rollback-confirm").await;
    b.click("#rollback-confirm").await;
    wait_value(&cms, "settings", "v1").await;
    b.wait_text("#app-suspended", "the paused notice", STEP, |t| {
        t.contains(&c1)
    })
    .await;
    b.wait_text("#app-revision", "the rolled-back revision", STEP, |t| {
        t == c1
    })
    .await;
    b.wait_text(
        "#history tbody tr:first-child",
        "the rollback in the history",
        STEP,
        |t| t.contains("rollback") && t.contains("first version"),
    )
    .await;
    b.shot("7-rolled-back").await;
    b.close().await;
}

#[tokio::test]
async fn keyboard_only_in_light_and_dark() {
    let ns = testenv().namespace("ui-keys").await;
    let repo = GitRepo::new();
    let names = ["billing", "catalog", "checkout"];
    for n in names {
        repo.write(&format!("{n}/cm.yaml"), cm(n, "1"));
    }
    repo.commit("three apps");
    let f = Fixture::new();
    for n in names {
        f.write_app(
            &format!("{n}.yaml"),
            &application(n, &repo, n, ns.name(), MANUAL),
        );
    }
    let s = Served::start(f.config(), AuthMode::Tokens).await;
    for n in names {
        wait_for(&s.agent, n, "reconcile", STEP, reconciled).await;
    }

    for (scheme, background) in [
        (Scheme::Light, "rgb(255, 255, 255)"),
        (Scheme::Dark, "rgb(15, 18, 22)"),
    ] {
        let tag = format!("{scheme:?}").to_lowercase();
        let b = Browser::start(&format!("keys-{tag}"), scheme).await;
        b.client.goto(&s.url("/login")).await.unwrap();
        // The token field has focus; typing and Enter sign in.
        let active = b.client.active_element().await.unwrap();
        assert_eq!(active.attr("id").await.unwrap().as_deref(), Some("token"));
        active
            .send_keys(&format!("{}{}", s.readonly, char::from(Key::Enter)))
            .await
            .unwrap();
        b.client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css("#apps"))
            .await
            .unwrap();
        let bg = b
            .js("return getComputedStyle(document.body).backgroundColor;")
            .await;
        assert_eq!(bg, json!(background), "{tag} scheme");
        b.shot("list").await;

        // "/" jumps to the search field; Enter searches.
        b.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .send_keys("/")
            .await
            .unwrap();
        let active = b.client.active_element().await.unwrap();
        assert_eq!(active.attr("id").await.unwrap().as_deref(), Some("search"));
        active
            .send_keys(&format!("check{}", char::from(Key::Enter)))
            .await
            .unwrap();
        b.wait_text("#apps tbody", "the search result", STEP, |t| {
            t.contains("checkout") && !t.contains("billing")
        })
        .await;

        // Tab reaches the Application's link, with a visible focus ring, and
        // Enter opens it.
        let mut reached = false;
        for _ in 0..40 {
            let a = b.client.active_element().await.unwrap();
            if a.attr("href").await.unwrap().as_deref()
                == Some(format!("/applications/{}%2Fcheckout", ns.name()).as_str())
            {
                let outline = b
                    .js("return getComputedStyle(document.activeElement).outlineStyle;")
                    .await;
                assert_ne!(outline, json!("none"), "focus must be visible");
                b.shot("focus").await;
                a.send_keys(&char::from(Key::Enter).to_string())
                    .await
                    .unwrap();
                reached = true;
                break;
            }
            a.send_keys(&char::from(Key::Tab).to_string())
                .await
                .unwrap();
        }
        assert!(reached, "Tab never reached the Application link");
        b.client
            .wait()
            .at_most(STEP)
            .for_element(Locator::Css(&format!(
                "#app[data-key='{}/checkout']",
                ns.name()
            )))
            .await
            .unwrap();
        b.wait_text("#diff", "the diff", STEP, |t| {
            t.contains("differ") || t.contains("equals")
        })
        .await;
        b.shot("app").await;
        b.close().await;
    }
}
