//! Apps and the submission of tasks: create, list, delete, the projected state, idempotency.

use serde_json::json;
use task_dispatch::{Action, AppState, Entity, Error, TaskStatus};

use crate::common;
use crate::on_both_backends;
use crate::{new_app, own, run_next_ok};

async fn connect_migrates_once_and_reconnects(db: &common::TestDb) {
    let first = db.store().await;
    let app = first.create_app(new_app("a")).await.unwrap();
    first.close().await;
    // Migrations already applied: connecting again keeps the data.
    let second = db.store().await;
    assert_eq!(second.get_app(app.id).await.unwrap().name, "a");
}
on_both_backends!(connect_migrates_once_and_reconnects =>
    mysql_connect_migrates_once_and_reconnects, sqlite_connect_migrates_once_and_reconnects);

async fn apps_create_get_list_page(db: &common::TestDb) {
    let store = db.store().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let app = store
            .create_app(new_app(&format!("app-{i}")))
            .await
            .unwrap();
        assert_eq!(app.state, AppState::Created);
        assert_eq!(app.version, 1);
        ids.push(app.id);
    }
    let got = store.get_app(ids[2]).await.unwrap();
    assert_eq!(got.name, "app-2");
    assert_eq!(got.spec, json!({"command": ["sh", "-c", "sleep 1000"]}));
    assert_eq!(got.lease, None);

    let page1 = store.list_apps(1, 2).await.unwrap();
    let page3 = store.list_apps(3, 2).await.unwrap();
    let page4 = store.list_apps(4, 2).await.unwrap();
    assert_eq!(page1.total, 5);
    assert_eq!(
        page1.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        ids[..2]
    );
    assert_eq!(
        page3.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        ids[4..]
    );
    assert!(page4.items.is_empty());

    assert!(matches!(
        store.get_app(ids[4] + 1000).await,
        Err(Error::NotFound {
            entity: Entity::App,
            ..
        })
    ));
    assert!(matches!(
        store.list_apps(0, 10).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.list_apps(1, 1001).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.create_app(new_app(" ")).await,
        Err(Error::InvalidInput(_))
    ));
    let long = "x".repeat(256);
    assert!(matches!(
        store.create_app(new_app(&long)).await,
        Err(Error::InvalidInput(_))
    ));
    // Non-ASCII names are stored as given.
    let unicode = store.create_app(new_app("流处理-app")).await.unwrap();
    assert_eq!(store.get_app(unicode.id).await.unwrap().name, "流处理-app");
}
on_both_backends!(apps_create_get_list_page =>
    mysql_apps_create_get_list_page, sqlite_apps_create_get_list_page);

async fn delete_is_refused_while_active(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("d")).await.unwrap();
    let start = store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap()
        .task;

    // A queued task blocks the delete even though the app is CREATED.
    let refused = store.delete_app(app.id).await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::AppActive {
                state: AppState::Created,
                unfinished_tasks: true,
                ..
            }
        ),
        "{refused:?}"
    );

    let lease = own(&store, "n1", app.id).await;
    run_next_ok(&store, &lease, app.id).await;
    assert!(matches!(
        store.delete_app(app.id).await,
        Err(Error::AppActive {
            state: AppState::Running,
            unfinished_tasks: false,
            ..
        })
    ));

    store.submit_task(app.id, Action::Stop, None).await.unwrap();
    let (_, stopped) = run_next_ok(&store, &lease, app.id).await;
    assert_eq!(stopped.state, AppState::Stopped);
    store.delete_app(app.id).await.unwrap();
    assert!(matches!(
        store.get_app(app.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_app(app.id).await,
        Err(Error::NotFound { .. })
    ));
    // Its tasks stay readable.
    assert_eq!(
        store.get_task(start.id).await.unwrap().status,
        TaskStatus::Succeeded
    );
}
on_both_backends!(delete_is_refused_while_active =>
    mysql_delete_is_refused_while_active, sqlite_delete_is_refused_while_active);

async fn submit_checks_the_projected_state(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("p")).await.unwrap();
    assert!(matches!(
        store.submit_task(app.id, Action::Stop, None).await,
        Err(Error::IllegalTransition {
            from: AppState::Created,
            action: Action::Stop
        })
    ));
    assert!(matches!(
        store.check_action(app.id, Action::Restart).await,
        Err(Error::IllegalTransition {
            from: AppState::Created,
            action: Action::Restart
        })
    ));
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    // Once the start is queued, a second start is refused against the RUNNING it leads to...
    assert!(matches!(
        store.submit_task(app.id, Action::Start, None).await,
        Err(Error::IllegalTransition {
            from: AppState::Running,
            action: Action::Start
        })
    ));
    // ...and a stop is accepted.
    store.submit_task(app.id, Action::Stop, None).await.unwrap();
    store.check_action(app.id, Action::Start).await.unwrap();
    assert!(matches!(
        store.submit_task(app.id + 999, Action::Start, None).await,
        Err(Error::NotFound {
            entity: Entity::App,
            ..
        })
    ));
    assert!(matches!(
        store.get_task(123_456).await,
        Err(Error::NotFound {
            entity: Entity::Task,
            ..
        })
    ));
}
on_both_backends!(submit_checks_the_projected_state =>
    mysql_submit_checks_the_projected_state, sqlite_submit_checks_the_projected_state);

async fn idempotency_key_returns_the_first_task(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("i")).await.unwrap();
    let first = store
        .submit_task(app.id, Action::Start, Some("k-1"))
        .await
        .unwrap();
    assert!(first.created);
    let again = store
        .submit_task(app.id, Action::Start, Some("k-1"))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.task, first.task);
    // Same key, different request: refused, nothing inserted.
    assert!(matches!(
        store.submit_task(app.id, Action::Stop, Some("k-1")).await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.submit_task(app.id, Action::Start, Some("")).await,
        Err(Error::InvalidInput(_))
    ));

    // Concurrent repeats of a new key: one insert, everyone gets its task.
    let other = store.create_app(new_app("i2")).await.unwrap();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .submit_task(other.id, Action::Start, Some("k-2"))
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::BTreeSet::new();
    for handle in handles {
        let submitted = handle.await.unwrap();
        created += usize::from(submitted.created);
        ids.insert(submitted.task.id);
    }
    assert_eq!((created, ids.len()), (1, 1));
    assert_eq!(
        crate::ids(store.apps_with_unfinished_tasks().await.unwrap()),
        vec![app.id, other.id]
    );
}
on_both_backends!(idempotency_key_returns_the_first_task =>
    mysql_idempotency_key_returns_the_first_task, sqlite_idempotency_key_returns_the_first_task);

/// Issue 12, finding 12: keys and node ids that differ only in case are different keys and ids
/// (MariaDB's default collation made `A` return the task of `a`, and fencing `N1` fence `n1`).
async fn identifiers_compare_byte_for_byte(db: &common::TestDb) {
    let store = db.store().await;
    let first = store.create_app(new_app("lower")).await.unwrap();
    let second = store.create_app(new_app("upper")).await.unwrap();
    let lower = store
        .submit_task(first.id, Action::Start, Some("key"))
        .await
        .unwrap();
    let upper = store
        .submit_task(second.id, Action::Start, Some("KEY"))
        .await
        .unwrap();
    assert!(upper.created, "KEY is not key: {upper:?}");
    assert_ne!(upper.task.id, lower.task.id);
    assert_eq!(upper.task.app_id, second.id);

    let small = store.register_node("node-a").await.unwrap();
    let capital = store.register_node("NODE-A").await.unwrap();
    assert_eq!(
        (small.epoch, capital.epoch),
        (1, 1),
        "two nodes, two epochs"
    );
    store.fence_node(&capital).await.unwrap();
    assert_eq!(
        store.register_node("node-a").await.unwrap().epoch,
        2,
        "fencing NODE-A left node-a's epoch alone"
    );
}
on_both_backends!(identifiers_compare_byte_for_byte =>
    mysql_identifiers_compare_byte_for_byte, sqlite_identifiers_compare_byte_for_byte);

async fn concurrent_submissions_are_checked_against_each_other(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("race")).await.unwrap();
    // Separate connections (separate stores), as separate nodes would use.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(db.store().await);
    }
    let submits = (0..20).map(|i| {
        let store = stores[i % stores.len()].clone();
        async move { store.submit_task(app.id, Action::Start, None).await }
    });
    let outcomes = futures::future::join_all(submits).await;
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(
        accepted, 1,
        "only the first of 20 concurrent starts is allowed: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || matches!(o, Err(Error::IllegalTransition { .. }))),
        "the others are refused as illegal: {outcomes:?}"
    );
}
on_both_backends!(concurrent_submissions_are_checked_against_each_other =>
    mysql_concurrent_submissions_are_checked_against_each_other,
    sqlite_concurrent_submissions_are_checked_against_each_other);

/// Issue 16: an app keeps the weight it was created with; the app set's version grows with
/// every create and delete (not with other writes), and the set read answers ids and weights.
async fn weights_and_the_app_set_version(db: &common::TestDb) {
    let store = db.store().await;
    let before = store.app_set_version().await.unwrap();
    let heavy = store
        .create_app(task_dispatch::NewApp {
            weight: 64,
            ..new_app("heavy")
        })
        .await
        .unwrap();
    let light = store.create_app(new_app("light")).await.unwrap();
    assert_eq!(store.get_app(heavy.id).await.unwrap().weight, 64);
    assert_eq!(light.weight, 1);
    let created = store.app_set_version().await.unwrap();
    assert_eq!(created, before + 2);
    let set = store.app_set().await.unwrap();
    assert_eq!(set.version, created);
    assert_eq!(set.weights, [(heavy.id, 64), (light.id, 1)]);

    for weight in [0, task_dispatch::MAX_APP_WEIGHT + 1] {
        let refused = store
            .create_app(task_dispatch::NewApp {
                weight,
                ..new_app("bad")
            })
            .await;
        assert!(
            matches!(&refused, Err(Error::InvalidInput(message)) if message.contains("weight")),
            "{refused:?}"
        );
    }
    // A task changes the app, not the set.
    store
        .submit_task(light.id, Action::Start, None)
        .await
        .unwrap();
    assert_eq!(store.app_set_version().await.unwrap(), created);
    // A refused delete changes nothing; a done one bumps the version.
    assert!(store.delete_app(light.id).await.is_err());
    assert_eq!(store.app_set_version().await.unwrap(), created);
    store.delete_app(heavy.id).await.unwrap();
    let set = store.app_set().await.unwrap();
    assert_eq!(set.version, created + 1);
    assert_eq!(set.weights, [(light.id, 1)]);
}
on_both_backends!(weights_and_the_app_set_version =>
    mysql_weights_and_the_app_set_version, sqlite_weights_and_the_app_set_version);

/// Issue 16: a weight changes only while the app is idle; the change bumps the app's and the
/// app set's versions; setting the same weight changes nothing.
async fn a_weight_changes_only_while_the_app_is_idle(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("resized")).await.unwrap();
    let version = store.app_set_version().await.unwrap();
    let resized = store.set_app_weight(app.id, 8).await.unwrap();
    assert_eq!((resized.weight, resized.version), (8, app.version + 1));
    assert_eq!(store.app_set_version().await.unwrap(), version + 1);
    let same = store.set_app_weight(app.id, 8).await.unwrap();
    assert_eq!(
        same.version, resized.version,
        "the same weight changes nothing"
    );
    assert_eq!(store.app_set_version().await.unwrap(), version + 1);
    assert!(matches!(
        store.set_app_weight(app.id, 0).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.set_app_weight(app.id + 1000, 2).await,
        Err(Error::NotFound { .. })
    ));
    // A queued start: the owner may write the app at any moment, so the weight stays.
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let refused = store.set_app_weight(app.id, 2).await;
    assert!(
        matches!(&refused, Err(Error::Conflict(message)) if message.contains("unfinished tasks")),
        "{refused:?}"
    );
    assert_eq!(store.get_app(app.id).await.unwrap().weight, 8);
    assert_eq!(store.app_set_version().await.unwrap(), version + 1);
}
on_both_backends!(a_weight_changes_only_while_the_app_is_idle =>
    mysql_a_weight_changes_only_while_the_app_is_idle, sqlite_a_weight_changes_only_while_the_app_is_idle);
