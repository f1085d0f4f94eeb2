//! Node sessions and app leases: a new session fences the old one, adoption waits for live
//! holders and fences dead ones.

use task_dispatch::{Action, Adoption, AppState, Error, Outcome, Phase, TaskStatus};

use crate::common;
use crate::on_both_backends;
use crate::{claim_next, new_app, own};

async fn a_new_session_fences_the_old_ones_writes(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("f")).await.unwrap();
    let old = own(&store, "n1", app.id).await;
    assert_eq!(old.epoch, 1);
    store
        .submit_task(app.id, Action::Start, None)
        .await
        .unwrap();
    let (task, starting, _) = claim_next(&store, &old, app.id).await;

    // n1 loses its session and registers again: the old session's writes are refused.
    let new = store.register_node("n1").await.unwrap();
    assert_eq!(new.epoch, 2);
    let late = store
        .finish_task(
            &old,
            &task,
            &starting,
            Phase::Start,
            Outcome::Succeeded { handle: None },
        )
        .await
        .unwrap_err();
    assert!(matches!(late, Error::Fenced { epoch: 1, .. }), "{late:?}");
    assert!(matches!(
        store.check_epoch(&old).await,
        Err(Error::Fenced { .. })
    ));
    assert_eq!(
        store.get_task(task.id).await.unwrap().status,
        TaskStatus::Running
    );

    // The new session adopts the app (its own node id) and re-claims the orphaned task,
    // resuming the phase the app shows.
    assert!(matches!(
        store.adopt_app(&new, app.id, None, |_| true).await.unwrap(),
        Adoption::Adopted(_)
    ));
    let (again, app_now, phases) = claim_next(&store, &new, app.id).await;
    assert_eq!((again.id, again.attempts), (task.id, 2));
    assert_eq!(phases, [Phase::Start]);
    assert_eq!(app_now.state, AppState::Starting);
    let (done, _) = store
        .finish_task(
            &new,
            &again,
            &app_now,
            Phase::Start,
            Outcome::Succeeded { handle: None },
        )
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Succeeded);
}
on_both_backends!(a_new_session_fences_the_old_ones_writes =>
    mysql_a_new_session_fences_the_old_ones_writes, sqlite_a_new_session_fences_the_old_ones_writes);

async fn adoption_waits_for_live_holders_and_fences_dead_ones(db: &common::TestDb) {
    let store = db.store().await;
    let app = store.create_app(new_app("a")).await.unwrap();
    let a = own(&store, "a", app.id).await;
    let b = store.register_node("b").await.unwrap();

    // a is live: b must wait.
    assert_eq!(
        store.adopt_app(&b, app.id, None, |_| true).await.unwrap(),
        Adoption::HeldBy(a.clone())
    );
    // a releases it (ownership moved while a is alive): b takes it, a stays unfenced.
    assert!(store.release_app(&a, app.id).await.unwrap());
    assert!(!store.release_app(&a, app.id).await.unwrap());
    assert!(matches!(
        store.adopt_app(&b, app.id, None, |_| true).await.unwrap(),
        Adoption::Adopted(_)
    ));
    store.check_epoch(&a).await.unwrap();

    // b dies without releasing: a (membership says b is gone) takes over and fences b.
    let Adoption::Adopted(adopted) = store
        .adopt_app(&a, app.id, None, |node| node != "b")
        .await
        .unwrap()
    else {
        panic!("a dead holder must not block adoption");
    };
    assert_eq!(adopted.lease, Some(a.clone()));
    assert_eq!(store.get_app(app.id).await.unwrap().lease, Some(a.clone()));
    assert!(matches!(
        store.check_epoch(&b).await,
        Err(Error::Fenced { .. })
    ));
    assert_eq!(store.node_epoch("b").await.unwrap(), Some(b.epoch + 1));
    // Adopting again is a no-op.
    assert!(matches!(
        store.adopt_app(&a, app.id, None, |_| true).await.unwrap(),
        Adoption::Adopted(_)
    ));
    // b comes back with a new session; fencing an old epoch again changes nothing.
    let b2 = store.register_node("b").await.unwrap();
    assert_eq!(b2.epoch, b.epoch + 2);
    assert!(!store.fence_node(&b).await.unwrap());
    store.check_epoch(&b2).await.unwrap();

    store.delete_app(app.id).await.unwrap();
    assert_eq!(
        store.adopt_app(&a, app.id, None, |_| true).await.unwrap(),
        Adoption::Gone
    );
    assert!(matches!(
        store.register_node("").await,
        Err(Error::InvalidInput(_))
    ));
}
on_both_backends!(adoption_waits_for_live_holders_and_fences_dead_ones =>
    mysql_adoption_waits_for_live_holders_and_fences_dead_ones,
    sqlite_adoption_waits_for_live_holders_and_fences_dead_ones);
