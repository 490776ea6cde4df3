//! Answers that mix tenants, filtered to the scoped tenant's objects.

use serde_json::Value;

use super::LABEL;

/// Whether a JSON object's `Labels` give it to `tenant`.
pub fn owned_by(obj: &Value, tenant: &str) -> bool {
    label_of(obj) == Some(tenant)
}

/// The owner label of an inspected object: `Labels` at the top (volumes,
/// networks, list entries) or under `Config` (containers, images).
pub fn label_of(obj: &Value) -> Option<&str> {
    let labels = obj
        .get("Labels")
        .filter(|l| l.is_object())
        .or_else(|| obj.get("Config").and_then(|c| c.get("Labels")));
    labels.and_then(|l| l.get(LABEL)).and_then(Value::as_str)
}

/// `GET /system/df`: containers and volumes are the tenant's own only; the
/// build cache (unlabelled, shared) is left out; images are shared and kept.
/// `None` if the answer is not the JSON object expected (the caller refuses
/// it rather than pass it on).
pub fn system_df(body: &[u8], tenant: &str) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    for key in ["Containers", "Volumes"] {
        if let Some(list) = obj.get_mut(key) {
            match list {
                Value::Array(items) => items.retain(|o| owned_by(o, tenant)),
                Value::Null => {}
                _ => return None,
            }
        }
    }
    if let Some(bc) = obj.get_mut("BuildCache") {
        *bc = Value::Array(Vec::new());
    }
    Some(serde_json::to_vec(&v).expect("a JSON value serializes"))
}

/// `GET /networks/{id}` of a network that is not the tenant's (a predefined,
/// shared one): its `Containers` map would list other tenants' containers,
/// so it is emptied; the tenant's own containers there are listed by
/// `docker inspect` on them. `None` if the answer is not a JSON object.
pub fn shared_network(body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    if obj.contains_key("Containers") {
        obj.insert("Containers".into(), Value::Object(Default::default()));
    }
    if obj.contains_key("Services") {
        obj.insert("Services".into(), Value::Object(Default::default()));
    }
    Some(serde_json::to_vec(&v).expect("a JSON value serializes"))
}

/// A create's `409` names the container that holds the name (`... is
/// already in use by container "ID"`): the ID is cut, the conflict stays
/// (names are one namespace on the engine, see docs/security.md).
pub fn conflict_message(body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let msg = v.get("message")?.as_str()?;
    let cut = match msg.find(" is already in use by ") {
        Some(i) => format!(
            "{}. {}",
            &msg[..i + " is already in use".len()],
            "Choose another name."
        ),
        None => return None,
    };
    Some(serde_json::to_vec(&serde_json::json!({ "message": cut })).expect("serializes"))
}

/// `GET /info`: the container counts (`Containers`, `ContainersRunning`,
/// `ContainersPaused`, `ContainersStopped`) are the tenant's own, counted
/// from `own` — the tenant's `GET /containers/json?all=1` answer (list
/// entries with a `State`). `None` if either is not the JSON expected.
pub fn info(body: &[u8], own: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let list: Value = serde_json::from_slice(own).ok()?;
    let list = list.as_array()?;
    let state = |s: &str| {
        list.iter()
            .filter(|c| c.get("State").and_then(Value::as_str) == Some(s))
            .count()
    };
    let (running, paused) = (state("running"), state("paused"));
    let obj = v.as_object_mut()?;
    obj.insert("Containers".into(), list.len().into());
    obj.insert("ContainersRunning".into(), running.into());
    obj.insert("ContainersPaused".into(), paused.into());
    obj.insert(
        "ContainersStopped".into(),
        (list.len() - running - paused).into(),
    );
    Some(serde_json::to_vec(&v).expect("a JSON value serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn system_df_keeps_own_objects() {
        let body = json!({
            "LayersSize": 10,
            "Images": [{"Id": "sha256:1", "Labels": {}}],
            "Containers": [
                {"Id": "a1", "Names": ["/a"], "Labels": {"io.sockbroker.tenant": "a"}},
                {"Id": "b1", "Names": ["/b"], "Labels": {"io.sockbroker.tenant": "b"}},
                {"Id": "n1", "Names": ["/n"], "Labels": {}},
                {"Id": "n2", "Names": ["/m"]}
            ],
            "Volumes": [
                {"Name": "va", "Labels": {"io.sockbroker.tenant": "a"}},
                {"Name": "vb", "Labels": {"io.sockbroker.tenant": "b"}},
                {"Name": "anon", "Labels": null}
            ],
            "BuildCache": [{"ID": "x"}]
        });
        let out = system_df(body.to_string().as_bytes(), "a").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["Containers"].as_array().unwrap().len(), 1);
        assert_eq!(v["Containers"][0]["Id"], "a1");
        assert_eq!(v["Volumes"].as_array().unwrap().len(), 1);
        assert_eq!(v["Volumes"][0]["Name"], "va");
        assert_eq!(v["BuildCache"], json!([]));
        assert_eq!(v["Images"].as_array().unwrap().len(), 1);
        let text = String::from_utf8(out).unwrap();
        for leak in ["b1", "\"/b\"", "vb", "n1", "anon"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert!(system_df(b"[]", "a").is_none());
        assert!(system_df(br#"{"Containers":{}}"#, "a").is_none());
        assert!(system_df(b"x", "a").is_none());
        assert!(system_df(br#"{"Containers":null,"Volumes":null}"#, "a").is_some());
    }

    #[test]
    fn info_counts_the_tenants_containers() {
        let body = br#"{"Containers":9,"ContainersRunning":5,"ContainersPaused":1,"ContainersStopped":3,"Images":4}"#;
        let own = br#"[{"State":"running"},{"State":"exited"},{"State":"created"}]"#;
        let v: Value = serde_json::from_slice(&info(body, own).unwrap()).unwrap();
        assert_eq!(
            (
                &v["Containers"],
                &v["ContainersRunning"],
                &v["ContainersPaused"],
                &v["ContainersStopped"]
            ),
            (&json!(3), &json!(1), &json!(0), &json!(2))
        );
        assert_eq!(v["Images"], 4);
        assert!(info(b"[]", own).is_none());
        assert!(info(body, b"{}").is_none());
    }

    #[test]
    fn labels_of_inspected_objects() {
        assert_eq!(
            label_of(&json!({"Config": {"Labels": {LABEL: "a"}}})),
            Some("a")
        );
        assert_eq!(label_of(&json!({"Labels": {LABEL: "b"}})), Some("b"));
        assert_eq!(
            label_of(&json!({"Labels": null, "Config": {"Labels": {LABEL: "c"}}})),
            Some("c")
        );
        assert_eq!(label_of(&json!({"Labels": {LABEL: 1}})), None);
        assert_eq!(label_of(&json!({"Config": null})), None);
        assert_eq!(label_of(&json!([])), None);
    }

    #[test]
    fn shared_networks_hide_their_members() {
        let out =
            shared_network(br#"{"Name":"none","Containers":{"b1":{"Name":"b"}},"Options":{}}"#)
                .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["Containers"], json!({}));
        assert_eq!(v["Name"], "none");
    }

    #[test]
    fn conflicts_do_not_name_the_holder() {
        let out = conflict_message(
            br#"{"message":"Conflict. The container name \"/web\" is already in use by container \"0123abc\". You have to remove (or rename) that container to be able to reuse that name."}"#,
        )
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("0123abc"), "{s}");
        assert!(s.contains("\\\"/web\\\" is already in use"), "{s}");
        assert!(conflict_message(br#"{"message":"other"}"#).is_none());
    }
}
