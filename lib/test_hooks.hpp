#pragma once
// Fault injection for tests: the one place where the library lets a test step in at a moment
// whose real trigger is rare (a thread that cannot be created, a submitter preempted at just the
// wrong instruction). Private to lib/ and test/.
//
// Compiled in only when the library is built with -Dtest_hooks=true (meson_options.txt), which
// tools/test does for every configuration; everywhere else `at()` is an empty inline function
// and costs nothing. With hooks compiled in, each point costs one relaxed load of a global
// pointer and a branch that is not taken unless a test installed a hook.
//
// A hook runs on the thread that reaches the point; it may sleep (to widen a race window) or
// throw where the surrounding code may throw (see each point).

#include <atomic>  // for std::atomic

namespace tidepool::detail::test_hooks {

enum class point {
  // pool_core::launch, before a worker thread is created. May throw (as thread creation may).
  before_worker_thread_start,
  // pool_core::submit from outside the pool: the task is counted as accepted, stop not re-checked.
  after_external_accept,
  // subpool_core::submit: the task is in the subpool's queue, visible to its runners.
  after_subpool_enqueue,
  // fork-join spawn (lib/fork_join.cpp), after the full fence that orders its push before its
  // wake-up decision; reached only by the spawns that pay it. Must not throw (noexcept path).
  after_spawn_fence,
  // add_continuation (lib/completion.cpp): the continuation is in its list, the node's
  // continuation bit not yet set. Must not throw (noexcept path).
  after_continuation_registered,
  // pool_core::pace_global_take, when a worker is about to wait before its take from the global
  // queue. Must not throw (noexcept path).
  before_lockstep_pause,
  // pool_core::park, when a parked worker runs again after its wake-up, still counted in transit
  // (parking_handshake.hpp). Must not throw (noexcept path).
  after_wake_up,
  // pool_core::yield_if_far_ahead, when a thread outside the pool is about to yield its CPU.
  // Must not throw (noexcept path).
  before_far_ahead_yield,
};

using hook = void (*)(point);

#if defined(TIDEPOOL_TEST_HOOKS)
inline constexpr bool enabled = true;
// Set by tests only, before the code under test runs (relaxed: the test publishes it to the
// threads it starts afterwards through their creation, or through the submission it makes).
extern std::atomic<hook> installed;
inline void at(point p) {
  if (hook h = installed.load(std::memory_order_relaxed)) h(p);
}
#else
inline constexpr bool enabled = false;
inline void at(point) noexcept {}
#endif

}  // namespace tidepool::detail::test_hooks
