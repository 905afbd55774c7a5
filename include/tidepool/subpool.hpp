#pragma once
// tidepool::subpool — a slice of a pool with its own concurrency limit (pond's NewSubpool).
//
//   tidepool::pool pool;                      // say 8 workers
//   tidepool::subpool uploads{pool, 2};       // at most 2 uploads run at once, on pool's workers
//   uploads.go([] { upload(file); });
//   tidepool::subpool thumbnails{uploads, 1}; // subpools nest: at most 1, within uploads' 2
//
// * At most `max_concurrency` of its tasks run at once, on the parent's workers. Its other tasks
//   wait in the subpool's own queue, never by blocking a worker. 0 means the parent's limit (the
//   pool's worker count); more than that throws std::invalid_argument.
// * It counts its own tasks in metrics(); the parent's (and the pool's) metrics include them.
// * Stopping a subpool leaves the parent running; stopping the parent (pool or subpool) stops
//   its subpools: they refuse new tasks and run the ones they accepted.
// * queue_capacity / non_blocking as for a pool, inherited from the parent unless given. A
//   worker never blocks on a full subpool: a task that submits to one gets queue_full.
// * The destructor is stop_and_wait(). A subpool must not outlive its parent.
// * Destroyed from one of its own tasks (or from a task of a subpool nested in it, or from a task
//   run by a helping wait inside one of those), the destructor cannot wait for the calling task:
//   it stops the subpool and returns at once. Every task it accepted still runs (none is lost or
//   cancelled), and its internals are freed by the last of them to finish. Do not submit to it
//   afterwards, and (as for the pool) destroy its parent only after its tasks are done.

#include <chrono>       // for std::chrono::steady_clock, std::chrono::nanoseconds
#include <cstddef>      // for std::size_t
#include <memory>       // for std::unique_ptr
#include <optional>     // for std::optional

#include "tidepool/detail/submitter.hpp"
#include "tidepool/detail/timer_submitter.hpp"
#include "tidepool/metrics.hpp"
#include "tidepool/pool.hpp"
#include "tidepool/priority.hpp"
#include "tidepool/task.hpp"

namespace tidepool {

struct subpool_options {
  std::optional<std::size_t> queue_capacity;  // default: the parent's
  std::optional<bool> non_blocking;           // default: the parent's
  // The level of its tasks submitted without submit_options (and of the jobs that run its tasks
  // in the parent's queues). Default: the parent's, and normal for a subpool of a pool.
  std::optional<tidepool::priority> priority;
};

namespace detail {
class subpool_core;
class task_owner;
struct subpool_access;
}

// submit(f), try_submit(f) and go(f) come from detail::submitter (detail/submitter.hpp);
// submit_after, submit_at and go_every from detail::timer_submitter: served by the pool's timer
// queue; a due task enters this subpool's queue (within its limit) like a submission. stop()
// (this subpool's or an ancestor's) cancels its delayed tasks not yet due and ends its periodic
// timers, as the pool's stop() does for the pool.
class subpool : public detail::submitter<subpool>, public detail::timer_submitter<subpool> {
 public:
  subpool(pool& parent, std::size_t max_concurrency, subpool_options options = {});
  subpool(subpool& parent, std::size_t max_concurrency, subpool_options options = {});
  ~subpool();

  subpool(const subpool&) = delete;
  subpool& operator=(const subpool&) = delete;

  void stop();
  // stop(), then waits until every task this subpool accepted has finished (from inside a task
  // of the pool: helps run tasks meanwhile).
  void stop_and_wait();
  [[nodiscard]] bool stopped() const noexcept;
  [[nodiscard]] pool_metrics metrics() const;
  [[nodiscard]] std::size_t max_concurrency() const noexcept;
  // Changes the limit (pond's Subpool.Resize), with the constructor's rules: 0 means the
  // parent's limit now, more than that throws std::invalid_argument. It takes effect at once for
  // starting tasks: growing starts queued tasks now, up to the new limit; shrinking never
  // interrupts a running task, and no further task starts until fewer than the new limit run.
  // A bounded queue keeps its queue_capacity beyond the running tasks. Nested subpools keep
  // their own limits, and their tasks still count against this one.
  void set_max_concurrency(std::size_t n);

 private:
  friend class detail::submitter<subpool>;
  friend class detail::timer_submitter<subpool>;
  friend class task_group;
  friend struct detail::subpool_access;
  detail::submit_status submit_node(detail::task_node* node, bool may_block);
  detail::submit_status submit_node_at(detail::task_node* node, std::chrono::steady_clock::time_point when);
  detail::submit_status start_periodic(detail::periodic_state* state, std::chrono::nanoseconds period);

  std::unique_ptr<detail::subpool_core> core_;
};

namespace detail {
// For task_group: what a subpool's tasks report to (its core, which is private to lib/).
struct subpool_access {
  static task_owner& owner(subpool& s) noexcept;
};
}  // namespace detail

}  // namespace tidepool
