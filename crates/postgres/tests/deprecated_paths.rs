//! Code written against the old names of items that moved to `admin` or `mirror`, or became
//! configuration, still compiles (with a deprecation warning) for one release.

#![allow(deprecated)]

#[test]
fn moved_items_keep_their_old_root_paths() {
    let names: strata_postgres::RoleNames = strata_postgres::admin::RoleNames::default();
    assert_eq!(names, strata_postgres::admin::RoleNames::default());
    let _status: Option<strata_postgres::MigrationStatus> = None;
    // Naming the functions is what old code does; running them needs a database, which the
    // integration tests cover under their new paths.
    let _ = strata_postgres::set_up_roles;
    let _ = strata_postgres::migration_status;
    let _ = strata_postgres::unregister_projection;
    let _ = strata_postgres::copy_mirror_batch;
    let _ = strata_postgres::mirror_progress;
    let _ = strata_postgres::PgProjections::without_listening;
}
