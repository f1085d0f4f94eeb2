//! What runs besides tasks: monitoring marks dead apps, the purge of old tasks, the baseline's
//! full scan.

use task_dispatch::{Action, AppState, Entity, Error, TaskStatus};

use crate::common;
use crate::on_both_backends;
use crate::{ids, new_app, own, run_next_ok};

async fn monitoring_marks_a_dead_running_app_failed(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("mon")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    let created = store.get_app(app.id).await.unwrap();
    assert!(matches!(
        store.mark_app_dead(&lease, &created, "gone").await,
        Err(Error::Conflict(_))
    ));
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (_, running) = run_next_ok(&store, &lease, app.id).await;
    let dead = store
        .mark_app_dead(&lease, &running, "process 42 exited")
        .await
        .unwrap();
    assert_eq!(dead.state, AppState::Failed);
    assert_eq!(store.get_app(app.id).await.unwrap(), dead);
    // A second probe acting on the stale copy loses.
    assert!(matches!(
        store.mark_app_dead(&lease, &running, "again").await,
        Err(Error::Conflict(_))
    ));
}
on_both_backends!(monitoring_marks_a_dead_running_app_failed =>
    mysql_monitoring_marks_a_dead_running_app_failed, sqlite_monitoring_marks_a_dead_running_app_failed);

async fn purge_deletes_only_old_finished_tasks(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("purge")).await.unwrap();
    let lease = own(&store, "n1", app.id).await;
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (finished, _) = run_next_ok(&store, &lease, app.id).await;
    let pending = store
        .submit_task(app.id, Action::Stop, None)
        .await
        .unwrap()
        .task;
    assert_eq!(
        store.count_unfinished_tasks().await.unwrap(),
        [(TaskStatus::Pending, 1), (TaskStatus::Running, 0)]
    );
    let finished_at = finished
        .finished_at
        .expect("a finished task has finished_at");
    // Nothing finished before the cutoff: nothing goes.
    assert_eq!(
        store.purge_finished_tasks(finished_at, 100).await.unwrap(),
        0
    );
    // A cutoff after it: the finished task goes, the pending one stays.
    assert_eq!(
        store
            .purge_finished_tasks(finished_at + 1, 100)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        store.get_task(finished.id).await,
        Err(Error::NotFound {
            entity: Entity::Task,
            ..
        })
    ));
    assert_eq!(
        store.get_task(pending.id).await.unwrap().status,
        TaskStatus::Pending
    );
    assert_eq!(store.purge_finished_tasks(i64::MAX, 100).await.unwrap(), 0);
    // The database's clock is this machine's (the server runs here): it agrees within a
    // second, so the leader's second opinion reads the right unit and epoch.
    let skew = store.database_now_ms().await.unwrap() - task_dispatch::unix_millis();
    assert!(skew.abs() < 1_000, "database clock off by {skew} ms");
}
on_both_backends!(purge_deletes_only_old_finished_tasks =>
    mysql_purge_deletes_only_old_finished_tasks, sqlite_purge_deletes_only_old_finished_tasks);

async fn full_scan_baseline_finds_the_same_apps(db: &common::TestDb) {
    let store = db.store().await;
    let busy = store.create_app(new_app("busy")).await.unwrap();
    let done = store.create_app(new_app("done")).await.unwrap();
    let lease = own(&store, "n1", done.id).await;
    store
        .submit_task(done.id, Action::Start, None)
        .await
        .unwrap();
    run_next_ok(&store, &lease, done.id).await;
    store
        .submit_task(busy.id, Action::Start, None)
        .await
        .unwrap();
    let indexed = store.apps_with_unfinished_tasks().await.unwrap();
    assert_eq!(ids(indexed.clone()), [busy.id]);
    assert_eq!(
        store
            .apps_with_unfinished_tasks_by_full_scan()
            .await
            .unwrap(),
        indexed
    );
}
on_both_backends!(full_scan_baseline_finds_the_same_apps =>
    mysql_full_scan_baseline_finds_the_same_apps, sqlite_full_scan_baseline_finds_the_same_apps);

/// The check of a batch of wake-ups: only the ids with unfinished tasks come back, whatever the
/// length of the batch (one id, a padded shape, several statements) and however it repeats.
async fn woken_ids_are_checked_against_the_task_index(db: &common::TestDb) {
    let store = db.store().await;
    let busy = store.create_app(new_app("busy")).await.unwrap();
    let idle = store.create_app(new_app("idle")).await.unwrap();
    store
        .submit_task(busy.id, Action::Start, None)
        .await
        .unwrap();
    let among = |list: Vec<i64>| {
        let store = store.clone();
        async move { ids(store.apps_with_unfinished_tasks_among(&list).await.unwrap()) }
    };
    assert_eq!(among(vec![]).await, Vec::<i64>::new());
    assert_eq!(among(vec![busy.id]).await, [busy.id]);
    assert_eq!(among(vec![idle.id]).await, Vec::<i64>::new());
    assert_eq!(among(vec![idle.id, busy.id, busy.id]).await, [busy.id]);
    let made_up: Vec<i64> = (1_000_000..1_000_600).collect();
    assert_eq!(among(made_up.clone()).await, Vec::<i64>::new());
    let mut mixed = made_up;
    mixed.insert(300, busy.id);
    mixed.push(idle.id);
    assert_eq!(among(mixed).await, [busy.id]);
}
on_both_backends!(woken_ids_are_checked_against_the_task_index =>
    mysql_woken_ids_are_checked_against_the_task_index,
    sqlite_woken_ids_are_checked_against_the_task_index);
