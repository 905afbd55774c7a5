// libFuzzer target: the bytes become a small pool and, for 2 or 3 threads, a sequence of public
// operations (submit / go / try_submit of plain, throwing, briefly blocking or child-spawning
// callables; groups; subpools, nested ones too; stop, stop_and_wait, resize, the pool's stop
// token; destroying groups and subpools). The threads run their sequences at once. Afterwards
// the promises are checked:
//   * every accepted submission was counted `submitted`, every refusal `dropped`, nothing else;
//   * submitted == waiting + running + succeeded + failed + cancelled in every snapshot, and
//     after stop_and_wait() nothing is waiting or running;
//   * every accepted task ran or was reported cancelled: each handle's get() returns the value,
//     rethrows the task's own exception or throws task_cancelled, and the tasks that ran plus
//     the cancelled ones are all the accepted ones;
//   * no retention: no capture is alive once stop_and_wait() returned and the handles are gone.
// A violated promise aborts (libFuzzer saves the input); a hang is caught by libFuzzer's -timeout.
//
// Built by tools/fuzz (clang, -fsanitize=fuzzer,address,undefined).

#include <fuzzer/FuzzedDataProvider.h>

#include <array>       // for std::array
#include <atomic>      // for std::atomic
#include <chrono>      // for std::chrono
#include <cstdint>     // for std::uint8_t, std::uint64_t
#include <cstdio>      // for std::fprintf
#include <cstdlib>     // for std::abort
#include <memory>      // for std::unique_ptr, std::make_unique
#include <optional>    // for std::optional
#include <stdexcept>   // for std::runtime_error
#include <stop_token>  // for std::stop_source, std::stop_token
#include <thread>      // for std::thread
#include <vector>      // for std::vector

#include "tidepool/tidepool.hpp"

namespace {

// A promise is broken: report which, and let libFuzzer keep the input.
[[noreturn]] void broken(const char* promise, std::uint64_t expected = 0, std::uint64_t actual = 0) {
  std::fprintf(stderr, "fuzz_api: broken promise: %s (expected %llu, got %llu)\n", promise,
               static_cast<unsigned long long>(expected), static_cast<unsigned long long>(actual));
  std::abort();
}

void check(bool ok, const char* promise) {
  if (!ok) broken(promise);
}

void check_equal(std::uint64_t expected, std::uint64_t actual, const char* promise) {
  if (expected != actual) broken(promise, expected, actual);
}

// What every input's run tallies, from the callers' side.
struct tally {
  std::atomic<std::uint64_t> accepted{0};  // submissions that returned normally
  std::atomic<std::uint64_t> refused{0};   // pool_stopped, queue_full, or no task from try_submit
  std::atomic<std::uint64_t> ran{0};       // task bodies that started
  std::atomic<long> live_captures{0};
};
tally* current = nullptr;

struct counted {
  counted() noexcept { current->live_captures.fetch_add(1, std::memory_order_relaxed); }
  counted(const counted&) noexcept { current->live_captures.fetch_add(1, std::memory_order_relaxed); }
  counted(counted&&) noexcept { current->live_captures.fetch_add(1, std::memory_order_relaxed); }
  counted& operator=(const counted&) = default;
  counted& operator=(counted&&) = default;
  ~counted() { current->live_captures.fetch_sub(1, std::memory_order_relaxed); }
};

struct planned_failure : std::runtime_error {
  planned_failure() : std::runtime_error("planned failure of a fuzzed task") {}
};

enum class body : std::uint8_t { plain, throws, blocks_briefly, spawns_child };
constexpr std::uint8_t body_kinds = 4;

tidepool::pool* the_pool = nullptr;

// A callable of the given kind; every one counts itself as run and holds a counted capture.
// Larger than a node's inline storage (80 bytes), so it is stored on the heap; small_task is
// stored inside the node.
struct fuzz_task {
  body kind;
  int value;
  counted capture;
  std::array<char, 96> padding{};

  int operator()() const {
    current->ran.fetch_add(1, std::memory_order_relaxed);
    switch (kind) {
      case body::throws:
        throw planned_failure();
      case body::blocks_briefly:
        std::this_thread::sleep_for(std::chrono::microseconds(20 + value % 200));
        break;
      case body::spawns_child:
        // From a worker: never blocks on its own pool (runs inline when full, or is refused).
        try {
          the_pool->go([c = counted()] { current->ran.fetch_add(1, std::memory_order_relaxed); });
          current->accepted.fetch_add(1, std::memory_order_relaxed);
        } catch (const tidepool::pool_stopped&) {
          current->refused.fetch_add(1, std::memory_order_relaxed);
        } catch (const tidepool::queue_full&) {
          current->refused.fetch_add(1, std::memory_order_relaxed);
        }
        break;
      default:
        break;
    }
    return value;
  }
};

struct small_task {
  body kind;
  int value;
  counted capture;
  int operator()() const {
    current->ran.fetch_add(1, std::memory_order_relaxed);
    if (kind == body::throws) throw planned_failure();
    if (kind == body::blocks_briefly) std::this_thread::sleep_for(std::chrono::microseconds(20 + value % 200));
    return value;
  }
};

// A handle and what its get() may produce.
struct pending_result {
  tidepool::task<int> handle;
  int value;
  bool may_throw;
};

// Runs one submission call and tallies its outcome.
template <class Submit>
void submission(Submit submit) {
  try {
    if (submit()) {
      current->accepted.fetch_add(1, std::memory_order_relaxed);
    } else {
      current->refused.fetch_add(1, std::memory_order_relaxed);
    }
  } catch (const tidepool::pool_stopped&) {
    current->refused.fetch_add(1, std::memory_order_relaxed);
  } catch (const tidepool::queue_full&) {
    current->refused.fetch_add(1, std::memory_order_relaxed);
  }
}

void collect(pending_result& r) {
  try {
    const int v = r.handle.get();
    check(v == r.value, "get() returns the task's value");
  } catch (const planned_failure&) {
    check(r.may_throw, "get() rethrows only the task's own exception");
  } catch (const tidepool::task_cancelled&) {
    // Skipped before it started: counted cancelled, checked in the totals.
  }
}

void check_identity(const tidepool::pool_metrics& m, const char* where) {
  if (m.submitted != m.waiting + m.running + m.succeeded + m.failed + m.cancelled) {
    std::fprintf(stderr, "fuzz_api: %s\n", where);
    broken("submitted == waiting + running + succeeded + failed + cancelled", m.submitted,
           m.waiting + m.running + m.succeeded + m.failed + m.cancelled);
  }
}

struct op {
  std::uint8_t kind;
  std::uint8_t arg;
};

constexpr std::uint8_t op_kinds = 16;

// One thread's objects: only this thread touches them, so it may destroy them at any point.
// TODO(issue 13 #3): share subpools between threads (destroyed once every sharer's submissions
// returned) once a submitter no longer touches the subpool after publishing its task; today a
// task can finish and its subpool be destroyed while the submit() call is still inside it.
// Not generated either, until issue 13 #5 and #2 are fixed: a task that destroys its own group
// or subpool, and a refused task whose capture holds the last reference to the pool.
struct thread_state {
  std::vector<pending_result> results;
  std::unique_ptr<tidepool::subpool> sub;
  std::unique_ptr<tidepool::subpool> nested;  // a child of `sub`: destroyed before it
  std::unique_ptr<tidepool::task_group> group;

  void destroy_subpools() {
    nested.reset();
    sub.reset();
  }
};

void run_ops(const std::vector<op>& ops, tidepool::pool& pool, std::stop_source& pool_stop, thread_state& me) {
  for (const op& o : ops) {
    const body kind = static_cast<body>(o.arg % body_kinds);
    const int value = o.arg;
    const bool may_throw = kind == body::throws;
    switch (o.kind % op_kinds) {
      case 0:
        submission([&] {
          me.results.push_back({pool.submit(fuzz_task{kind, value, {}}), value, may_throw});
          return true;
        });
        break;
      case 1:
        submission([&] {
          pool.go(small_task{kind, value, {}});
          return true;
        });
        break;
      case 2:
        submission([&] {
          auto t = pool.try_submit(small_task{kind, value, {}});
          if (!t) return false;
          me.results.push_back({std::move(*t), value, may_throw});
          return true;
        });
        break;
      case 3:  // a group task; the group is created on first use
        if (!me.group) me.group = std::make_unique<tidepool::task_group>(pool);
        submission([&] {
          if (o.arg % 2 == 0) {
            me.results.push_back({me.group->submit(fuzz_task{kind, value, {}}), value, may_throw});
          } else {
            me.group->go([t = small_task{kind, value, {}}](std::stop_token stop) {
              if (!stop.stop_requested()) t();
              else current->ran.fetch_add(1, std::memory_order_relaxed);  // ran, returned early
            });
          }
          return true;
        });
        break;
      case 4:  // wait for the group (rethrows its first failure), then destroy it
        if (me.group) {
          try {
            me.group->wait();
          } catch (const planned_failure&) {
          }
          me.group.reset();
        }
        break;
      case 5:
        if (me.group) me.group->stop();
        break;
      case 6: {  // a subpool task; the subpool is created on first use
        // 0: the pool's limit. Not a number from workers(): another thread may resize meanwhile.
        if (!me.sub) me.sub = std::make_unique<tidepool::subpool>(pool, o.arg % 2);
        tidepool::subpool& s = *me.sub;
        submission([&] {
          if (o.arg % 3 == 0) {
            me.results.push_back({s.submit(small_task{kind, value, {}}), value, may_throw});
            return true;
          }
          if (o.arg % 3 == 1) {
            s.go(fuzz_task{kind, value, {}});
            return true;
          }
          auto t = s.try_submit(fuzz_task{kind, value, {}});
          if (!t) return false;
          me.results.push_back({std::move(*t), value, may_throw});
          return true;
        });
        break;
      }
      case 7:  // a nested subpool's task
        if (!me.sub) break;
        if (!me.nested) me.nested = std::make_unique<tidepool::subpool>(*me.sub, 1);
        submission([&] {
          me.nested->go(small_task{kind, value, {}});
          return true;
        });
        break;
      case 8:
        if (me.sub) (o.arg % 2 == 0 ? me.sub : me.nested ? me.nested : me.sub)->stop();
        break;
      case 9:
        me.destroy_subpools();
        break;
      case 10:
        try {
          pool.resize(1 + o.arg % 3);
        } catch (const tidepool::pool_stopped&) {  // pool.hpp: resize() after stop() throws
          if (!pool.stopped()) throw;
        }
        break;
      case 11:
        if (o.arg % 8 == 0) pool.stop();  // rarely: it ends the interesting part
        break;
      case 12:
        if (o.arg % 8 == 0) pool.stop_and_wait();
        break;
      case 13:
        if (o.arg % 8 == 0) pool_stop.request_stop();  // cancels what has not started
        break;
      case 14:
        check_identity(pool.metrics(), "a snapshot while the threads run");
        break;
      case 15:  // from outside a worker: one task, run on the pool
        try {
          long sum = 0;
          std::atomic<long> shared{0};
          tidepool::parallel_for(pool, 0, 1 + o.arg, [&](int i) { shared.fetch_add(i, std::memory_order_relaxed); });
          sum = shared.load();
          check(sum == static_cast<long>(o.arg) * (o.arg + 1) / 2, "parallel_for visits every index once");
          current->accepted.fetch_add(1, std::memory_order_relaxed);
          current->ran.fetch_add(1, std::memory_order_relaxed);
        } catch (const tidepool::task_cancelled&) {
          current->accepted.fetch_add(1, std::memory_order_relaxed);  // accepted, then skipped
        } catch (const tidepool::pool_stopped&) {
          current->refused.fetch_add(1, std::memory_order_relaxed);
        } catch (const tidepool::queue_full&) {
          current->refused.fetch_add(1, std::memory_order_relaxed);
        }
        break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider input(data, size);
  tally counts;
  current = &counts;

  std::stop_source pool_stop;
  tidepool::pool_options options;
  options.workers = input.ConsumeIntegralInRange<std::size_t>(1, 3);
  const std::size_t capacities[] = {tidepool::unbounded, 0, 1, 4, 16};
  options.queue_capacity = input.PickValueInArray(capacities);
  options.non_blocking = input.ConsumeBool();
  options.latency_sample_every = input.ConsumeIntegralInRange<std::uint32_t>(0, 2);
  if (input.ConsumeBool()) options.stop_token = pool_stop.get_token();
  options.on_unhandled_exception = [](std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const planned_failure&) {
    } catch (...) {
      broken("on_unhandled_exception receives only the tasks' own exceptions");
    }
  };
  const std::size_t thread_count = input.ConsumeBool() ? 3 : 2;

  // Decoded up front: the provider is not thread-safe.
  std::vector<std::vector<op>> sequences(thread_count);
  for (auto& sequence : sequences) {
    const std::size_t n = input.ConsumeIntegralInRange<std::size_t>(0, 24);
    for (std::size_t i = 0; i < n && input.remaining_bytes() > 0; ++i) {
      sequence.push_back({input.ConsumeIntegral<std::uint8_t>(), input.ConsumeIntegral<std::uint8_t>()});
    }
  }

  {
    tidepool::pool pool(options);
    the_pool = &pool;
    std::vector<thread_state> states(thread_count);
    {
      std::vector<std::thread> threads;
      for (std::size_t t = 1; t < thread_count; ++t) {
        threads.emplace_back([&, t] { run_ops(sequences[t], pool, pool_stop, states[t]); });
      }
      run_ops(sequences[0], pool, pool_stop, states[0]);
      for (auto& th : threads) th.join();
    }
    // Every handle reports its task's outcome; groups and subpools wait for theirs.
    for (auto& s : states) {
      for (auto& r : s.results) collect(r);
      s.results.clear();
      if (s.group) {
        try {
          s.group->wait();
        } catch (const planned_failure&) {
        }
      }
      s.group.reset();
      s.destroy_subpools();
    }
    pool.stop_and_wait();

    const tidepool::pool_metrics m = pool.metrics();
    check_identity(m, "after stop_and_wait");
    check_equal(0, m.waiting, "nothing waits after stop_and_wait");
    check_equal(0, m.running, "nothing runs after stop_and_wait");
    check_equal(counts.accepted.load(), m.submitted, "every accepted submission is counted submitted, nothing else");
    check_equal(counts.refused.load(), m.dropped, "every refusal is counted dropped, nothing else");
    check_equal(m.submitted, counts.ran.load() + m.cancelled, "every accepted task ran or was reported cancelled");
    check_equal(0, static_cast<std::uint64_t>(counts.live_captures.load()), "no capture outlives its task");
    the_pool = nullptr;
  }
  check_equal(0, static_cast<std::uint64_t>(counts.live_captures.load()), "no capture outlives the pool");
  current = nullptr;
  return 0;
}
