// The store conformance suite's cases run on a store of two shards, shared (`include!`) by
// `crates/shard/tests/memory_conformance.rs` and `integration-tests/tests/shard_conformance.rs`.
// Every case of `strata_store::conformance_tests!` is listed here or in `REFUSED_CASES`, which
// `every_store_case_runs_or_is_refused_on_purpose` checks.

/// Cases a store of several shards must refuse, so they cannot pass on one: each has a test of
/// its own that asserts the refusal and the per-shard behaviour instead.
/// - `commit_horizon_is_past_every_visible_event`: each server has its own horizon, and no one
///   position bounds them all, so `commit_horizon` is refused with several shards.
#[allow(dead_code)] // Read by the check in one of the two including files only.
const REFUSED_CASES: &[&str] = &["commit_horizon_is_past_every_visible_event"];

/// Instances of the suite placed on each shard. `instance-a` and `instance-b` share a shard: the
/// suite pushes to both in one push (unique constraints removed per instance, correlation ids
/// across instances, a key of one instance over commands of another), which a sharded store
/// refuses across shards. `instance-c` and `b` live on the other shard, so the cases reading
/// `instance-a` with `instance-c`, every instance, or the heads of `a` and `b`, cross shards.
#[allow(dead_code)] // Used by whichever factory the including file writes.
const FIRST_SHARD: &[&str] = &["instance-a", "instance-b", "a"];
#[allow(dead_code)]
const SECOND_SHARD: &[&str] = &["instance-c", "b"];

macro_rules! sharded_conformance_cases {
    ($make:expr, expiring: $expiring:expr $(,)?) => {
        strata_store::conformance_tests!(@cases $expiring;
            idempotency_keys_expire,
        );
        strata_store::conformance_tests!(@cases $make;
            push_returns_stored_events,
            empty_push_stores_nothing,
            sequences_are_gap_free_per_aggregate,
            multi_aggregate_push_is_atomic_on_conflict,
            expected_sequence_is_checked_before_the_push,
            unique_constraint_clash_writes_nothing,
            unique_constraints_remove_before_add,
            unique_constraints_are_scoped_by_instance,
            remove_all_unique_constraints_of_instance,
            duplicate_unique_add_in_one_push_is_refused,
            positions_give_a_total_order,
            queries_filter_order_limit_and_page,
            queries_never_cross_instances,
            cursors_resume_after_any_in_tx_order,
            latest_position_and_current_sequence,
            instance_heads_give_each_instance_its_latest_position,
            payloads_round_trip,
            oversized_push_is_refused,
            concurrent_pushes_to_one_aggregate,
            concurrent_overlapping_pushes_do_not_deadlock,
            bad_input_is_refused_and_changes_nothing,
            metadata_round_trips,
            queries_filter_by_correlation_id,
            invalid_metadata_is_refused_with_its_field,
            idempotent_retry_returns_the_first_events,
            idempotency_key_with_other_commands_is_refused,
            idempotency_keys_are_scoped_by_instance,
            failed_idempotent_push_records_no_key,
            empty_idempotent_push_records_nothing,
            concurrent_idempotent_retries_store_one_copy,
            idempotent_pushes_grouped_with_others,
            subscription_catches_up_then_follows_live,
            subscription_resumes_after_a_cursor_or_from_now,
            subscription_filters_like_its_query,
            subscription_refuses_queries_it_cannot_follow,
            subscription_with_an_upper_bound_ends,
            subscription_under_concurrent_writers_misses_nothing,
            subscription_waits_for_a_slow_reader,
        );
    };
}
