//! The client against real provider binaries from the plugin mirror that
//! `testenv/setup.d/20-infra` builds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../plumb-state/tests/support/infra_tools.rs"]
mod infra_tools;

use std::collections::BTreeMap;
use std::path::PathBuf;

use infra_tools::infra_tools;
use plumb_tfplugin::{Provider, Value};

fn provider_binary(kind: &str) -> PathBuf {
    PathBuf::from(infra_tools(
        &["provider", kind],
        &format!("provider {kind} is missing"),
    ))
}

#[tokio::test]
async fn random_speaks_protocol_5_over_mtls() {
    let p = Provider::start(&provider_binary("random")).await.unwrap();
    assert_eq!(p.protocol_version(), 5);
    let schema = p.schema();
    assert!(schema.resources.contains_key("random_id"));
    assert!(schema.resources["random_id"].block.attributes["byte_length"].required);
    p.configure(&Value::Map(BTreeMap::new())).await.unwrap();

    let config = Value::Map(BTreeMap::from([("byte_length".into(), Value::int(8))]));
    let ty = schema.resources["random_id"].block.implied_type();
    let config = plumb_tfplugin::value::convert(&config, &ty).unwrap();
    let plan = p
        .plan_resource_change("random_id", &Value::Null, &config, &config, &[])
        .await
        .unwrap();
    assert!(plan.planned_state.get_attr("hex").unwrap().is_unknown());
    let (state, _) = p
        .apply_resource_change(
            "random_id",
            &Value::Null,
            &plan.planned_state,
            &config,
            &plan.planned_private,
        )
        .await
        .unwrap();
    let hex = state.get_attr("hex").unwrap().as_str().unwrap().to_string();
    assert_eq!(hex.len(), 16);
    let (read, _) = p.read_resource("random_id", &state, &[]).await.unwrap();
    assert_eq!(read.get_attr("hex").unwrap().as_str(), Some(hex.as_str()));
    p.shutdown().await;
}

#[tokio::test]
async fn protocol_6_provider_round_trips() {
    let p = Provider::start(&provider_binary("plumbtest"))
        .await
        .unwrap();
    assert_eq!(p.protocol_version(), 6);
    assert!(p.schema().resources.contains_key("plumbtest_object"));
    p.shutdown().await;
}

#[tokio::test]
async fn provider_errors_come_back_as_diagnostics() {
    let p = Provider::start(&provider_binary("random")).await.unwrap();
    p.configure(&Value::Map(BTreeMap::new())).await.unwrap();
    let ty = p.schema().resources["random_integer"].block.implied_type();
    let config = plumb_tfplugin::value::convert(
        &Value::Map(BTreeMap::from([
            ("min".into(), Value::int(10)),
            ("max".into(), Value::int(1)),
        ])),
        &ty,
    )
    .unwrap();
    let result = async {
        p.validate_resource_config("random_integer", &config)
            .await?;
        let plan = p
            .plan_resource_change("random_integer", &Value::Null, &config, &config, &[])
            .await?;
        p.apply_resource_change(
            "random_integer",
            &Value::Null,
            &plan.planned_state,
            &config,
            &plan.planned_private,
        )
        .await
    }
    .await;
    let err = result.expect_err("min > max must be refused").to_string();
    assert!(err.contains("minimum"), "{err}");
    p.shutdown().await;
}
