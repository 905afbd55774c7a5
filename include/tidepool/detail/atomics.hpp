#pragma once
// The one seam between the lock-free core and the memory model it runs on.
//
// The Chase–Lev deque, the segmented queue, the priority queues, the hazard-pointer domain, the
// parking handshake and a subpool's runner slots spell their atomics `detail::atomic<T>` and
// their fences `detail::atomic_thread_fence` / `atomic_signal_fence` (always qualified, so
// argument-dependent lookup cannot pick std's); the continuation registry is a template over its
// node, which its model gives a detail::atomic state word. In every normal build these are std::atomic and std's fences
// themselves: aliases and using-declarations, so the generated code is exactly what std::atomic
// gives (zero cost by construction, not by optimisation).
//
// Compiled with TIDEPOOL_RELACY (test/relacy/ only), they become Relacy's modelled atomics and
// fences (Dmitry Vyukov's Relacy Race Detector, Debian relacy-dev): the *real* headers then run
// under Relacy's scheduler, which explores thread interleavings and the weak-memory outcomes that
// the C++ memory model allows, and reports data races, use of freed memory and failed asserts.
// The hazard domain swaps its thread-locals, registry and membarrier for modelled versions under
// the same switch (lib/hazard_pointers.cpp).
//
// Seeded mutants: `mutated(m)` is `constexpr false` in normal builds, so `if (mutated(m))` vanishes;
// under Relacy it is true for the one mutant the harness switches on, which lets the model checker
// show that it catches a removed fence, a weakened order or a missing compare-exchange.

#include <atomic>  // for std::atomic, std::memory_order, std::atomic_thread_fence, std::atomic_signal_fence

#if defined(TIDEPOOL_RELACY)
#include <source_location>  // for std::source_location: Relacy reports the caller's line

// Relacy's parts, without relacy.hpp, whose macros rename `new`, `delete` and the memory orders.
#include <relacy/base.hpp>
#include <relacy/context.hpp>
#include <relacy/context_base_impl.hpp>
#include <relacy/backoff.hpp>
#include <relacy/atomic_fence.hpp>
#include <relacy/atomic.hpp>
#include <relacy/var.hpp>
#include <relacy/thread_local.hpp>
#include <relacy/test_suite.hpp>
#include <relacy/dyn_thread.hpp>
#include <relacy/stdlib/mutex.hpp>
#include <relacy/stdlib/condition_variable.hpp>
#include <relacy/stdlib/semaphore.hpp>
#include <relacy/stdlib/event.hpp>

#include <type_traits>  // for std::conditional_t, std::is_pointer_v, std::remove_const_t
#endif

namespace tidepool::detail {

// The seeded bugs the Relacy models must catch (test/relacy/). Each names what it breaks.
enum class mutant : int {
  none,
  deque_pop_without_fence,        // pop: no seq_cst fence between bottom's store and top's load
  deque_push_relaxed_publish,     // push: the item is published without the release fence
  deque_steal_without_cas,        // steal: top is advanced with a plain store, not a CAS
  hazard_protect_without_fence,   // protect: no fence between the hazard's store and the re-check
  hazard_scan_without_fence,      // scan: hazards read without the heavy fence (a failed membarrier ignored)
  queue_link_relaxed,             // enqueue: a new segment (our item in slot 0) is linked with relaxed order
  parking_recheck_before_leaving_unparked,  // park: the last look at the queues comes before the announcement
  parking_wake_check_relaxed,               // submitter: searching/unparked read relaxed after a queue's RMW
  parking_recheck_without_fence,            // park: no fence between leaving unparked and the last look
  parking_stay_without_searching,           // park: a worker that stays for work it saw does not search again
  subpool_no_recheck_after_give_back,  // runner: gives its slot back and does not look at the queue again
  subpool_take_before_publish,         // submitter: tries to take a slot before its task is in the queue
  subpool_take_slot_without_cas,       // submitter: takes a slot with a load and a store, not a CAS
  level_in_use_relaxed,                // priority queues: a level's first use is flagged with a relaxed store
  continuation_state_load_relaxed,     // awaiter: finds the outcome published with relaxed loads
  continuation_refused_after_taken,    // awaiter: says "refused" although the publisher took its entry
};

#if !defined(TIDEPOOL_RELACY)

template <class T>
using atomic = std::atomic<T>;
using std::atomic_signal_fence;
using std::atomic_thread_fence;

constexpr bool mutated(mutant) noexcept { return false; }

#else

// The mutant the harness switched on for the current run.
inline mutant active_mutant = mutant::none;
inline bool mutated(mutant m) noexcept { return m == active_mutant; }

inline rl::memory_order to_relacy(std::memory_order order) noexcept {
  switch (order) {
    case std::memory_order_relaxed: return rl::mo_relaxed;
    case std::memory_order_consume: return rl::mo_consume;
    case std::memory_order_acquire: return rl::mo_acquire;
    case std::memory_order_release: return rl::mo_release;
    case std::memory_order_acq_rel: return rl::mo_acq_rel;
    case std::memory_order_seq_cst: break;
  }
  return rl::mo_seq_cst;
}

inline rl::debug_info relacy_info(const std::source_location& where) noexcept {
  return rl::debug_info(where.function_name(), where.file_name(), where.line());
}

// std::atomic's interface, as much of it as the core uses, over rl::atomic. Default-constructed
// values are value-initialised, as std::atomic's are since C++20.
template <class T>
class atomic {
  using here = std::source_location;
  // rl::atomic cannot hold a pointer to const: it holds the pointer without the const.
  using held = std::conditional_t<std::is_pointer_v<T>, std::remove_const_t<std::remove_pointer_t<T>>*, T>;
  static held in(T value) noexcept {
    if constexpr (std::is_pointer_v<T>) {
      return const_cast<held>(value);
    } else {
      return value;
    }
  }

 public:
  atomic() noexcept : value_(held{}) {}
  atomic(T desired) noexcept : value_(in(desired)) {}  // NOLINT: implicit, like std::atomic's
  atomic(const atomic&) = delete;
  atomic& operator=(const atomic&) = delete;

  T load(std::memory_order order = std::memory_order_seq_cst, here at = here::current()) const noexcept {
    return value_.load(to_relacy(order), relacy_info(at));
  }
  void store(T desired, std::memory_order order = std::memory_order_seq_cst, here at = here::current()) noexcept {
    value_.store(in(desired), to_relacy(order), relacy_info(at));
  }
  T exchange(T desired, std::memory_order order = std::memory_order_seq_cst, here at = here::current()) noexcept {
    return value_.exchange(in(desired), to_relacy(order), relacy_info(at));
  }
  template <class D>
  T fetch_add(D delta, std::memory_order order = std::memory_order_seq_cst, here at = here::current()) noexcept {
    return value_.fetch_add(delta, to_relacy(order), relacy_info(at));
  }
  template <class D>
  T fetch_sub(D delta, std::memory_order order = std::memory_order_seq_cst, here at = here::current()) noexcept {
    return value_.fetch_sub(delta, to_relacy(order), relacy_info(at));
  }
  T fetch_or(T bits, std::memory_order order = std::memory_order_seq_cst, here at = here::current()) noexcept {
    return value_.fetch_or(bits, to_relacy(order), relacy_info(at));
  }
  bool compare_exchange_strong(T& expected, T desired, std::memory_order success, std::memory_order failure,
                               here at = here::current()) noexcept {
    return compare_exchange<false>(expected, desired, success, failure, at);
  }
  bool compare_exchange_weak(T& expected, T desired, std::memory_order success, std::memory_order failure,
                             here at = here::current()) noexcept {
    return compare_exchange<true>(expected, desired, success, failure, at);
  }
  bool compare_exchange_strong(T& expected, T desired, here at = here::current()) noexcept {
    return compare_exchange_strong(expected, desired, std::memory_order_seq_cst, std::memory_order_seq_cst, at);
  }
  bool compare_exchange_weak(T& expected, T desired, here at = here::current()) noexcept {
    return compare_exchange_weak(expected, desired, std::memory_order_seq_cst, std::memory_order_seq_cst, at);
  }

 private:
  template <bool Weak>
  bool compare_exchange(T& expected, T desired, std::memory_order success, std::memory_order failure,
                        const here& at) noexcept {
    held seen = in(expected);
    const rl::debug_info info = relacy_info(at);
    const bool exchanged =
        Weak ? value_.compare_exchange_weak(seen, in(desired), to_relacy(success), info, to_relacy(failure), info)
             : value_.compare_exchange_strong(seen, in(desired), to_relacy(success), info, to_relacy(failure), info);
    expected = seen;
    return exchanged;
  }

  rl::atomic<held> value_;
};

inline void atomic_thread_fence(std::memory_order order,
                                std::source_location at = std::source_location::current()) noexcept {
  rl::atomic_thread_fence(to_relacy(order), relacy_info(at));
}

// A compiler-only fence orders nothing between threads: Relacy records it and nothing more.
inline void atomic_signal_fence(std::memory_order order,
                                std::source_location at = std::source_location::current()) noexcept {
  rl::atomic_signal_fence(to_relacy(order), relacy_info(at));
}

#endif

}  // namespace tidepool::detail
