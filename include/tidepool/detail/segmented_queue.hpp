#pragma once
// Unbounded lock-free MPMC FIFO of pointers: a linked list of fixed-size array segments with
// fetch-and-add tickets, segments reclaimed through hazard pointers.
//
// When to use: the scheduler's global queue, which takes submissions from outside the pool and
// the overflow of full worker deques. Any number of threads enqueue and dequeue.
//
// Design (the family of folly's UnboundedQueue and the FAA array queue of Correia & Ramalhete):
//   * A segment holds `SegmentSize` slots and two tickets, one for producers, one for consumers.
//     A producer takes a ticket with fetch_add and compare-exchanges its item into that slot
//     (empty → item). A consumer takes a ticket and exchanges the slot for the `taken` marker.
//   * A consumer can reach a slot before its producer has written it. It waits a few pauses for
//     the producer, then leaves `taken` behind; the producer's compare-exchange fails and it takes
//     a new ticket. Consumers racing past the end of the filled slots (the empty check and the
//     ticket fetch_add are separate steps) spoil slots no producer holds yet in the same way.
//     Every operation is lock-free, none is wait-free: a producer can in theory keep losing its
//     slots to consumers; it is guaranteed a slot when it links a new segment (slot 0 is filled
//     before the segment is published). Measured: a few dozen spoiled slots per 300k items with
//     8 consumers on 2 cores.
//   * A producer that finds its segment full links a new segment with its item already in slot 0.
//     A consumer that finds its segment used up moves head on and retires the old segment.
//   * No retention: the consumer's exchange leaves `taken` in the slot, never the item, so the
//     queue never refers to an item it has handed out. Only whole segments are retired, and the
//     hazard-pointer domain bounds how many retired segments may wait for reclamation.
//   * `try_dequeue` on an empty queue reads two tickets and returns: no ticket is consumed, no
//     slot is spoiled, nothing is allocated.
//
// Per-producer FIFO: a producer's later item gets a later ticket (in the same or a later segment),
// and a consumer's later dequeue gets a later ticket too. So a consumer never sees a producer's
// items out of order.
//
// Memory usage: the live segments between head and tail (one when the queue is drained), plus at
// most `hazard_domain::unreclaimed_bound()` retired segments. A segment is
// SegmentSize pointers + 3 cache lines. Items are not owned: the queue never deletes them.

#include <atomic>       // for std::memory_order
#include <cstddef>      // for std::size_t, std::byte
#include <cstdint>      // for std::uint64_t
#include <type_traits>  // for std::is_object_v

#include "tidepool/detail/atomics.hpp"  // for atomic, mutated
#include "tidepool/detail/cache_line.hpp"
#include "tidepool/detail/cpu_pause.hpp"
#include "tidepool/detail/hazard_pointers.hpp"
#include "tidepool/detail/prefetch.hpp"

namespace tidepool::detail {

template <class T, std::size_t SegmentSize = 256>
  requires std::is_object_v<T> && (SegmentSize >= 2)
class segmented_queue {
  static constexpr auto relaxed = std::memory_order_relaxed;
  static constexpr auto acquire = std::memory_order_acquire;
  static constexpr auto release = std::memory_order_release;
  static constexpr auto acq_rel = std::memory_order_acq_rel;
  static constexpr auto seq_cst = std::memory_order_seq_cst;

 public:
  static constexpr std::size_t segment_size = SegmentSize;
  // How long a consumer waits for a producer that has its ticket but has not stored yet. A tuned
  // guess: 16 pauses are 0.1–2 µs depending on the core's pause latency (about 10 cycles on older
  // x86, 140 on Skylake and later): longer than the producer's window of a few instructions,
  // shorter than a context switch.
  static constexpr int producer_grace_spins = 16;

  segmented_queue() : head_{new segment(this)}, tail_{head_.value.load(relaxed)} {}

  // The queue must be quiescent. Items still queued are not deleted (the queue does not own them).
  ~segmented_queue() {
    segment* s = head_.value.load(relaxed);
    while (s != nullptr) {
      segment* next = s->next.load(relaxed);
      delete_segment(s);
      s = next;
    }
  }

  segmented_queue(const segmented_queue&) = delete;
  segmented_queue& operator=(const segmented_queue&) = delete;

  // Appends `item` (non-null). Everything the caller wrote before is visible to the consumer that
  // dequeues it. Throws std::bad_alloc if a new segment is needed and cannot be allocated; the
  // queue is then unchanged.
  void enqueue(T* item) {
    hazard_domain::holder hazard(domain_);
    for (;;) {
      segment* tail = hazard.protect(tail_.value);
      // seq_cst: consumers compare this ticket with theirs to decide "empty"; the pool's parking
      // protocol relies on that decision seeing every enqueue that came before it.
      const std::uint64_t ticket = tail->enqueue_ticket.fetch_add(1, seq_cst);
      if (ticket < SegmentSize) {
        // Once per line's worth of tickets, ask for the slots two lines on: a consumer close
        // behind may hold that line, having marked slots in it taken (detail/prefetch.hpp).
        if (ticket % slots_per_line == 0 && ticket + 2 * slots_per_line < SegmentSize) {
          prefetch_for_write(&tail->slots[ticket + 2 * slots_per_line]);
        }
        T* expected = nullptr;
        // release: pairs with the consumer's acquire exchange. Fails only if a consumer already
        // spoiled this slot; then take another ticket.
        if (tail->slots[ticket].compare_exchange_strong(expected, item, release, relaxed)) return;
        continue;
      }
      segment* next = tail->next.load(seq_cst);
      if (next == nullptr) {
        auto* fresh = new segment(this, item);
        // The new segment's contents (our item in slot 0) happen-before anyone who reaches it
        // through `next`. seq_cst rather than release: on this path linking is what publishes the
        // item, so it must take part in the same store→load argument as the ticket fetch_add
        // (see "empty" below). Free on x86 and ARMv8, where the CAS is a full barrier anyway.
        const auto link_order = mutated(mutant::queue_link_relaxed) ? relaxed : seq_cst;
        if (tail->next.compare_exchange_strong(next, fresh, link_order, link_order)) {
          tail_.value.compare_exchange_strong(tail, fresh, release, relaxed);
          return;
        }
        fresh->slots[0].store(nullptr, relaxed);  // another producer linked first; ours was never seen
        delete_segment(fresh);
      }
      // Help the producer that linked `next`, then retry there.
      tail_.value.compare_exchange_strong(tail, next, release, relaxed);
    }
  }

  // Removes the oldest item, or returns null when the queue is empty.
  [[nodiscard]] T* try_dequeue() {
    hazard_domain::holder hazard(domain_);
    for (;;) {
      segment* head = hazard.protect(head_.value);
      std::uint64_t ticket = head->dequeue_ticket.load(seq_cst);
      if (ticket < SegmentSize) {
        // If the consumers have caught up with the producers, the queue is empty right now
        // (`next` cannot exist yet: it is only linked once the producer ticket passes the end).
        if (ticket >= head->enqueue_ticket.load(seq_cst)) return nullptr;
        ticket = head->dequeue_ticket.fetch_add(1, seq_cst);
        if (ticket < SegmentSize) {
          if (T* item = take_slot(head, ticket, ticket < head->enqueue_ticket.load(relaxed))) return item;
          continue;  // we overtook the producer of this ticket; it will take another
        }
      }
      if (!advance_head(hazard, head)) return nullptr;
    }
  }

  // Removes up to `max` of the oldest items into `out`, in queue order, and returns how many.
  // One compare-exchange claims the whole batch, and only tickets that producers already hold:
  // a consumer that takes batches reads the producers' ticket (a line the producers keep
  // writing) once per batch instead of once per item, and never spoils a slot nobody holds.
  [[nodiscard]] std::size_t try_dequeue_bulk(T** out, std::size_t max) {
    if (max == 0) return 0;
    hazard_domain::holder hazard(domain_);
    for (;;) {
      segment* head = hazard.protect(head_.value);
      std::uint64_t ticket = head->dequeue_ticket.load(seq_cst);
      if (ticket < SegmentSize) {
        const std::uint64_t produced = head->enqueue_ticket.load(seq_cst);
        if (ticket >= produced) return 0;  // empty, as in try_dequeue
        const std::uint64_t end = produced < SegmentSize ? produced : SegmentSize;
        const std::uint64_t claim = end - ticket < max ? end - ticket : max;
        if (!head->dequeue_ticket.compare_exchange_weak(ticket, ticket + claim, seq_cst, relaxed)) continue;
        std::size_t count = 0;
        for (std::uint64_t i = 0; i < claim; ++i) {
          if (T* item = take_slot(head, ticket + i, /*producer_holds_ticket=*/true)) out[count++] = item;
        }
        if (count > 0) return count;
        continue;  // every claimed slot was given up on; look again
      }
      if (!advance_head(hazard, head)) return 0;
    }
  }

  // True when the queue looked empty. A snapshot: another thread may enqueue right after.
  // Empty decisions (here and in try_dequeue) read the producer ticket and `next` with seq_cst,
  // and every enqueue publishes through a seq_cst read-modify-write of one of the two. So a
  // caller that writes a flag with seq_cst and then checks emptiness, against a producer that
  // enqueues and then reads the flag with seq_cst, cannot have both miss each other: the pool's
  // parking protocol is built on this.
  [[nodiscard]] bool empty_estimate() {
    hazard_domain::holder hazard(domain_);
    segment* head = hazard.protect(head_.value);
    const std::uint64_t ticket = head->dequeue_ticket.load(seq_cst);
    if (ticket < SegmentSize) return ticket >= head->enqueue_ticket.load(seq_cst);
    return head->next.load(seq_cst) == nullptr;
  }

  // Segments allocated and not yet freed: live ones plus retired ones awaiting reclamation.
  [[nodiscard]] std::size_t segments_allocated() const noexcept { return segments_allocated_.load(relaxed); }

  [[nodiscard]] hazard_domain& reclamation_domain() noexcept { return domain_; }
  [[nodiscard]] const hazard_domain& reclamation_domain() const noexcept { return domain_; }

  // Test hook: how many slots of the live segments still hold an item. Counts what is queued and
  // nothing else, since a dequeued slot holds `taken`. Call only while no thread uses the queue.
  [[nodiscard]] std::size_t referenced_items_for_testing() const noexcept {
    std::size_t referenced = 0;
    for (segment* s = head_.value.load(relaxed); s != nullptr; s = s->next.load(relaxed)) {
      for (const auto& slot : s->slots) {
        T* p = slot.load(relaxed);
        referenced += p != nullptr && p != taken();
      }
    }
    return referenced;
  }

 private:
  static constexpr std::size_t slots_per_line = cache_line_size / sizeof(T*);

  struct segment {
    explicit segment(segmented_queue* queue, T* first = nullptr) : owner(queue) {
      for (auto& slot : slots) slot.store(nullptr, relaxed);
      if (first != nullptr) {
        slots[0].store(first, relaxed);
        enqueue_ticket.store(1, relaxed);
      }
      queue->segments_allocated_.fetch_add(1, relaxed);
    }

    // Producers and consumers hammer different tickets: keep them on different lines.
    alignas(cache_line_size) atomic<std::uint64_t> enqueue_ticket{0};
    alignas(cache_line_size) atomic<std::uint64_t> dequeue_ticket{0};
    alignas(cache_line_size) atomic<segment*> next{nullptr};
    segmented_queue* const owner;
    atomic<T*> slots[SegmentSize];
  };

  // The marker a consumer leaves in a slot. Its address is compared, never dereferenced (T may
  // be incomplete here, hence a byte array rather than a T).
  static T* taken() noexcept { return reinterpret_cast<T*>(&taken_marker); }
  alignas(cache_line_size) static inline std::byte taken_marker[cache_line_size]{};

  // Takes the item of a consumer ticket we hold, leaving `taken` in its slot; null if the
  // producer never delivered it (we spoiled the slot and the producer will take another ticket).
  static T* take_slot(segment* s, std::uint64_t ticket, bool producer_holds_ticket) noexcept {
    atomic<T*>& slot = s->slots[ticket];
    if (producer_holds_ticket) {
      // The producer is between its fetch_add and its store: a window of a few instructions.
      // Waiting briefly for it is cheaper than spoiling the slot, which costs it a retry.
      // Bounded, so a descheduled producer cannot stall us.
      for (int i = 0; i < producer_grace_spins && slot.load(relaxed) == nullptr; ++i) cpu_pause();
    }
    // acquire: pairs with the producer's release compare-exchange: the item is complete.
    return slot.exchange(taken(), acquire);
  }

  // The head segment is used up: move head to the next segment, if there is one, and retire the
  // old one. Returns false when there is no next segment (the queue is empty).
  bool advance_head(hazard_domain::holder& hazard, segment* head) {
    segment* next = head->next.load(seq_cst);
    if (next == nullptr) return false;
    // A retired segment must be unreachable from both ends, and tail can lag behind, so move
    // tail off `head` first. Tail never moves backwards, so it stays off.
    segment* lagging_tail = head;
    tail_.value.compare_exchange_strong(lagging_tail, next, release, relaxed);
    if (head_.value.compare_exchange_strong(head, next, seq_cst, relaxed)) {
      hazard.reset();
      domain_.retire(head, &reclaim_segment);
    }
    return true;
  }

  static void delete_segment(segment* s) noexcept {
    s->owner->segments_allocated_.fetch_sub(1, relaxed);
    delete s;
  }
  static void reclaim_segment(void* s) noexcept { delete_segment(static_cast<segment*>(s)); }

  struct alignas(cache_line_size) end_pointer {
    atomic<segment*> value;
  };

  atomic<std::size_t> segments_allocated_{0};
  // Declared before head_ and tail_ so that it is constructed before the first segment, and
  // destroyed after ~segmented_queue has freed the live ones.
  hazard_domain domain_;
  end_pointer head_;
  end_pointer tail_;
};

}  // namespace tidepool::detail
