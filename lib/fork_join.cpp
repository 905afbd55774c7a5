// The non-template half of fork-join (include/tidepool/fork_join.hpp) and task groups: finding
// the calling thread's worker, spawning onto its deque, and taking a spawned job back.

#include "pool_core.hpp"
#include "tidepool/fork_join.hpp"
#include "tidepool/task_group.hpp"

namespace tidepool::detail {

worker* worker_of(pool& p) noexcept { return pool_access::core(p).worker_of_this_thread(); }

bool spawn(worker& w, task_node* job) noexcept {
  const bool was_empty = w.deque.empty_estimate();
  if (!w.deque.push(job)) return false;
  // A full fence on every spawn would be the largest cost of a fine-grained fork-join, so only
  // the first job of a burst (pushed onto an empty deque) pays it, for a reliable wake-up
  // decision (the store→load argument in parking.cpp). A later job of the burst may go unseen
  // by a searcher that gives up at that moment: then it waits for the spawner or for the next
  // thief, costing parallelism, never the job — it is on the spawner's own deque, and the
  // spawner always joins it.
  if (was_empty) std::atomic_thread_fence(std::memory_order_seq_cst);
  w.core.wake_one_if_needed(&w);
  return true;
}

bool take_back(worker& w, task_node* job) noexcept {
  // Anything above the job on our deque was pushed after it by the first half (go() tasks it did
  // not wait for): run it now, it would run anyway. Then the job is on top, unless a thief took
  // it, in which case the pop returns something older (or nothing).
  while (task_node* t = w.deque.pop()) {
    if (t == job) return true;
    if (t->kind == task_kind::fork_join_job) {
      // An older job of an enclosing parallel_invoke on this thread, whose own job was stolen:
      // run it; its spawner will find it finished.
      w.core.execute(w, t, /*holds_slot=*/false);
      continue;
    }
    w.core.execute(w, t, /*holds_slot=*/true);
  }
  return false;
}

bool has_local_work(worker& w) noexcept { return !w.deque.empty_estimate(); }

}  // namespace tidepool::detail
