//! The operator's views: filtered pages, task history, counts by state, the change feed.

use task_dispatch::{Action, AppFilter, AppState, Error, unix_millis};

use crate::common;
use crate::on_both_backends;
use crate::{new_app, own, run_next_ok};

async fn apps_filtered_by_state_and_name(db: &common::TestDb) {
    let store = db.store().await;
    let mut ids = Vec::new();
    for name in [
        "Orders-east",
        "orders-west",
        "billing",
        "50%_off",
        "5000 off",
    ] {
        ids.push(store.create_app(new_app(name)).await.unwrap().id);
    }
    let lease = own(&store, "n1", ids[1]).await;
    store
        .submit_task(ids[1], Action::Start, None)
        .await
        .unwrap();
    run_next_ok(&store, &lease, ids[1]).await;

    let names = |page: task_dispatch::Page<task_dispatch::App>| {
        (
            page.items.into_iter().map(|a| a.name).collect::<Vec<_>>(),
            page.total,
        )
    };
    let by_name = |text: &str| AppFilter {
        states: Vec::new(),
        name_contains: Some(text.to_owned()),
    };
    assert_eq!(
        names(
            store
                .list_apps_where(&by_name("ORDERS"), 1, 10)
                .await
                .unwrap()
        ),
        (vec!["Orders-east".to_owned(), "orders-west".to_owned()], 2),
        "the name filter ignores ASCII case"
    );
    assert_eq!(
        names(store.list_apps_where(&by_name("0%_"), 1, 10).await.unwrap()),
        (vec!["50%_off".to_owned()], 1),
        "% and _ match themselves"
    );
    let running = AppFilter {
        states: vec![AppState::Running],
        name_contains: None,
    };
    assert_eq!(
        names(store.list_apps_where(&running, 1, 10).await.unwrap()),
        (vec!["orders-west".to_owned()], 1)
    );
    let both = AppFilter {
        states: vec![AppState::Created, AppState::Stopped],
        name_contains: Some("orders".to_owned()),
    };
    let page = store.list_apps_where(&both, 1, 1).await.unwrap();
    assert_eq!((page.items.len(), page.total), (1, 1), "page of 1, total 1");
    assert_eq!(page.items[0].name, "Orders-east");
    assert!(matches!(
        store
            .list_apps_where(&by_name(&"x".repeat(256)), 1, 10)
            .await,
        Err(Error::InvalidInput(_))
    ));

    let mut counts = store.count_apps_by_state().await.unwrap();
    counts.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(counts, vec![(AppState::Created, 4), (AppState::Running, 1)]);
    assert_eq!(store.count_apps().await.unwrap(), 5);
    assert_eq!(store.app_ids().await.unwrap(), ids);
}
on_both_backends!(apps_filtered_by_state_and_name =>
    mysql_apps_filtered_by_state_and_name, sqlite_apps_filtered_by_state_and_name);

async fn apps_counted_by_lease_holder(db: &common::TestDb) {
    let store = db.store().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c", "idle"] {
        ids.push(store.create_app(new_app(name)).await.unwrap().id);
    }
    assert!(store.count_apps_by_owner().await.unwrap().is_empty());
    own(&store, "n2", ids[0]).await;
    own(&store, "n1", ids[1]).await;
    let n1 = own(&store, "n1", ids[2]).await;
    assert_eq!(
        store.count_apps_by_owner().await.unwrap(),
        vec![("n1".to_owned(), 2), ("n2".to_owned(), 1)],
        "by node id, the idle app left out"
    );
    assert!(store.release_app(&n1, ids[2]).await.unwrap());
    assert_eq!(
        store.count_apps_by_owner().await.unwrap(),
        vec![("n1".to_owned(), 1), ("n2".to_owned(), 1)],
        "a released lease is not counted"
    );
}
on_both_backends!(apps_counted_by_lease_holder =>
    mysql_apps_counted_by_lease_holder, sqlite_apps_counted_by_lease_holder);

async fn task_history_newest_first(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("h")).await.unwrap();
    let other = store.create_app(new_app("o")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    run_next_ok(&store, &lease, app.id).await;
    store.submit_task(app.id, Action::Stop, None).await.unwrap();
    store
        .submit_task(other.id, Action::Start, None)
        .await
        .unwrap();

    let page = store.tasks_of_app(app.id, 1, 10).await.unwrap();
    assert_eq!(page.total, 2);
    let actions: Vec<Action> = page.items.iter().map(|t| t.action).collect();
    assert_eq!(actions, [Action::Stop, Action::Start], "newest first");
    assert_eq!(page.items[1].claimed_by.as_deref(), Some("n1"));
    let second = store.tasks_of_app(app.id, 2, 1).await.unwrap();
    assert_eq!(second.items[0].action, Action::Start);
    assert_eq!(store.tasks_of_app(999_999, 1, 10).await.unwrap().total, 0);
    assert!(matches!(
        store.tasks_of_app(app.id, 1, 201).await,
        Err(Error::InvalidInput(_))
    ));
}
on_both_backends!(task_history_newest_first =>
    mysql_task_history_newest_first, sqlite_task_history_newest_first);

async fn changes_since_a_moment(db: &common::TestDb) {
    let store = db.store().await;
    let old = store.create_app(new_app("old")).await.unwrap();
    let since = unix_millis() + 1;
    // Wait for the clock to pass `since` by watching it, so `old` is strictly before it.
    while unix_millis() <= since {
        tokio::task::yield_now().await;
    }
    let fresh = store.create_app(new_app("fresh")).await.unwrap();
    let task = store
        .submit_task(fresh.id, Action::Start, None)
        .await
        .unwrap();

    let apps = store.apps_updated_since(since, 100).await.unwrap();
    assert_eq!(apps.iter().map(|a| a.id).collect::<Vec<_>>(), [fresh.id]);
    let tasks = store.tasks_updated_since(since, 100).await.unwrap();
    assert_eq!(
        tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        [task.task.id]
    );
    assert_eq!(store.apps_updated_since(0, 1).await.unwrap()[0].id, old.id);
    assert_eq!(store.apps_updated_since(0, 100).await.unwrap().len(), 2);
}
on_both_backends!(changes_since_a_moment =>
    mysql_changes_since_a_moment, sqlite_changes_since_a_moment);
