#pragma once
// A snapshot of a pool's counters.

#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::uint64_t

#include "tidepool/latency_histogram.hpp"
#include "tidepool/priority.hpp"

namespace tidepool {

// Task counters follow Go's pond: every accepted task is counted `submitted` once and is, at any
// moment, in exactly one of scheduled, waiting, running, succeeded, failed, cancelled or expired:
//     submitted == scheduled + waiting + running + succeeded + failed + cancelled + expired.
// (`scheduled`: delayed tasks, submit_after / submit_at, whose time has not come; a task leaves
// it just before it can be seen in a queue, so no snapshot counts it twice or not at all.)
// A refused submission is counted `dropped` and never `submitted`.
//
// A snapshot is taken without stopping the pool. Counters are read in the reverse order of a
// task's life (finished first, submitted last), so the identity above holds in every snapshot and
// no gauge is ever negative; a task that moves on while the snapshot is taken is counted in its
// earlier state. After a task's completion is observed (its handle is ready, or stop_and_wait
// returned), every later snapshot counts it as finished.
struct pool_metrics {
  std::uint64_t submitted = 0;
  std::uint64_t waiting = 0;    // accepted, not started
  std::uint64_t running = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t failed = 0;     // threw an exception
  std::uint64_t cancelled = 0;  // accepted, then skipped before it started
  std::uint64_t expired = 0;    // accepted, then skipped: still waiting at its deadline
  std::uint64_t scheduled = 0;  // accepted delayed tasks not due yet (not `waiting` yet)
  std::uint64_t dropped = 0;    // refused: pool stopped or queue full

  // Scheduler counters: what the work-stealing machinery did.
  std::uint64_t local_pushes = 0;       // fork-join work a worker put on its own deque: task_group
                                        // tasks and subpool runner jobs submitted from a task
  std::uint64_t overflow_pushes = 0;    // queued tasks a retiring worker handed to the global queue
  std::uint64_t global_pushes = 0;      // what entered the global queue (pool submissions but
                                        // task_group ones from inside a task, subpool runner jobs
                                        // from outside threads, hand-overs); == global_pops once
                                        // the pool is drained
  std::uint64_t global_pops = 0;        // tasks workers took from the global queue
  std::uint64_t steal_attempts = 0;
  std::uint64_t steals = 0;             // successful steals
  std::uint64_t inline_runs = 0;        // tasks run by their submitting worker, the queue being full
  std::uint64_t parks = 0;              // times a worker went to sleep
  std::uint64_t wakeups = 0;            // times a submitter or worker woke a sleeping worker

  // Hazard-pointer reclamation of the global queue's segments.
  std::uint64_t queue_segments = 0;            // allocated, including retired ones not yet freed
  std::uint64_t retired_segments = 0;          // retired, not yet reclaimed
  std::uint64_t retired_segments_bound = 0;    // the most that can ever be retired and unreclaimed

  // Latencies of the sampled tasks (pool_options::latency_sample_every): submit → start, and
  // start → end. A subpool's tasks are sampled in its root pool's histograms. Fork-join jobs of
  // parallel_invoke / parallel_for are not tasks and are not sampled.
  // A subpool's own metrics() leave both empty.
  latency_histogram queue_wait;
  latency_histogram run_time;
  std::uint32_t latency_sample_every = 0;  // the pool's option: 1 in N tasks is timed (0: none)

  // Every wake-up of a parked worker, not sampled: from the wake-up call to the worker running
  // again. What a task that finds every worker asleep waits on top of its queue wait; on a
  // virtual machine whose idle vCPUs halt, mostly the host's doing (README, "Performance").
  // Its count includes the wake-ups of shutdown and of a shrink, which `wakeups` does not count.
  // A subpool's own metrics() leave it empty.
  latency_histogram wake_latency;

  // The same, per priority level, indexed by tidepool::priority (at_level(priority::high)). The
  // levels' waiting and started add up to the totals above; a subpool's own metrics leave these
  // empty, its tasks being counted in its root pool's.
  struct level_metrics {
    std::uint64_t waiting = 0;
    std::uint64_t started = 0;
    latency_histogram queue_wait;
  };
  level_metrics levels[priority_levels];
  [[nodiscard]] const level_metrics& at_level(priority p) const noexcept { return levels[static_cast<std::size_t>(p)]; }

  [[nodiscard]] std::uint64_t completed() const noexcept { return succeeded + failed; }
};

}  // namespace tidepool
