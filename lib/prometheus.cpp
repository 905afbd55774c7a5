#include "tidepool/prometheus.hpp"

#include <charconv>   // for std::to_chars
#include <cstdint>    // for std::uint64_t
#include <stdexcept>  // for std::invalid_argument

namespace tidepool {
namespace {

bool valid_metric_name(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!letter && !(digit && i > 0)) return false;
  }
  return true;
}

enum class kind { counter, gauge };

// Writes the HELP and TYPE lines of `<prefix>_<name><suffix>` and returns that full name.
std::string describe(std::string& out, std::string_view prefix, std::string_view name, std::string_view suffix,
                     std::string_view type, std::string_view help) {
  std::string full(prefix);
  full += '_';
  full += name;
  full += suffix;
  out += "# HELP " + full + ' ' + std::string(help) + '\n';
  out += "# TYPE " + full + ' ' + std::string(type) + '\n';
  return full;
}

void append(std::string& out, std::string_view prefix, std::string_view name, kind k, std::string_view help,
            std::uint64_t value) {
  const bool counter = k == kind::counter;
  const std::string full = describe(out, prefix, name, counter ? "_total" : "", counter ? "counter" : "gauge", help);
  out += full + ' ' + std::to_string(value) + '\n';
}

// The shortest decimal that reads back as the same double ("1.28e-07", "0.5").
std::string number(double value) {
  char text[32];
  const auto result = std::to_chars(text, text + sizeof text, value);
  return std::string(text, result.ptr);
}

// The samples of a histogram in seconds: cumulative `_bucket{le="..."}` lines ending with +Inf,
// then `_sum` and `_count` (equal to the +Inf bucket). `labels`: more labels, each followed by a
// comma (`priority="high",`), for one member of a labelled family.
void append_histogram_samples(std::string& out, const std::string& full, std::string_view labels,
                              const latency_histogram& h) {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < latency_histogram::bucket_count; ++i) {
    cumulative += h.buckets[i];
    const bool last = i + 1 == latency_histogram::bucket_count;
    const std::string le = last ? "+Inf" : number(static_cast<double>(latency_histogram::upper_bound_ns(i)) / 1e9);
    out += full + "_bucket{" + std::string(labels) + "le=\"" + le + "\"} " + std::to_string(cumulative) + '\n';
  }
  std::string braces;
  if (!labels.empty()) braces = '{' + std::string(labels.substr(0, labels.size() - 1)) + '}';
  out += full + "_sum" + braces + ' ' + number(static_cast<double>(h.sum_ns) / 1e9) + '\n';
  out += full + "_count" + braces + ' ' + std::to_string(cumulative) + '\n';
}

void append_histogram(std::string& out, std::string_view prefix, std::string_view name, std::string_view help,
                      const latency_histogram& h) {
  append_histogram_samples(out, describe(out, prefix, name, "_seconds", "histogram", help), "", h);
}

constexpr std::string_view priority_names[priority_levels] = {"low", "normal", "high"};

std::string priority_label(unsigned level) { return "priority=\"" + std::string(priority_names[level]) + '"'; }

// One sample per priority level of a labelled counter or gauge family.
template <class Value>
void append_by_priority(std::string& out, std::string_view prefix, std::string_view name, kind k, std::string_view help,
                        const pool_metrics& m, Value value) {
  const bool counter = k == kind::counter;
  const std::string full = describe(out, prefix, name, counter ? "_total" : "", counter ? "counter" : "gauge", help);
  for (unsigned level = 0; level < priority_levels; ++level) {
    out += full + '{' + priority_label(level) + "} " + std::to_string(value(m.levels[level])) + '\n';
  }
}

}  // namespace

std::string to_prometheus(const pool_metrics& m, std::string_view prefix) {
  if (!valid_metric_name(prefix)) {
    throw std::invalid_argument("tidepool::to_prometheus: '" + std::string(prefix) + "' is not a valid metric name");
  }
  std::string out;
  out.reserve(24576);
  append(out, prefix, "tasks_submitted", kind::counter, "Tasks accepted.", m.submitted);
  append(out, prefix, "tasks_succeeded", kind::counter, "Tasks that returned normally.", m.succeeded);
  append(out, prefix, "tasks_failed", kind::counter, "Tasks that threw.", m.failed);
  append(out, prefix, "tasks_cancelled", kind::counter, "Accepted tasks skipped before they started.", m.cancelled);
  append(out, prefix, "tasks_expired", kind::counter, "Accepted tasks skipped at their deadline.", m.expired);
  append(out, prefix, "tasks_dropped", kind::counter, "Submissions refused (pool stopped or queue full).", m.dropped);
  append(out, prefix, "tasks_waiting", kind::gauge, "Accepted tasks not started yet.", m.waiting);
  append(out, prefix, "tasks_running", kind::gauge, "Tasks running now.", m.running);
  append(out, prefix, "tasks_scheduled", kind::gauge, "Accepted delayed tasks not due yet.", m.scheduled);
  append(out, prefix, "local_pushes", kind::counter, "Task group tasks a worker put on its own deque.", m.local_pushes);
  append(out, prefix, "overflow_pushes", kind::counter, "Queued tasks a retiring worker handed to the global queue.", m.overflow_pushes);
  append(out, prefix, "global_pushes", kind::counter, "Tasks that entered the global queue.", m.global_pushes);
  append(out, prefix, "global_pops", kind::counter, "Tasks workers took from the global queue.", m.global_pops);
  append(out, prefix, "steal_attempts", kind::counter, "Attempts to steal from another worker.", m.steal_attempts);
  append(out, prefix, "steals", kind::counter, "Successful steals.", m.steals);
  append(out, prefix, "inline_runs", kind::counter, "Tasks run by their submitting worker, the queue being full.",
         m.inline_runs);
  append(out, prefix, "parks", kind::counter, "Times a worker went to sleep.", m.parks);
  append(out, prefix, "wakeups", kind::counter, "Times a sleeping worker was woken.", m.wakeups);
  append(out, prefix, "queue_segments", kind::gauge, "Global queue segments allocated.", m.queue_segments);
  append(out, prefix, "retired_segments", kind::gauge, "Retired global queue segments not yet reclaimed.",
         m.retired_segments);
  append(out, prefix, "retired_segments_bound", kind::gauge, "The most retired segments that can await reclamation.",
         m.retired_segments_bound);
  append(out, prefix, "latency_sample_every", kind::gauge, "One task in this many is timed for the histograms.",
         m.latency_sample_every);
  append_histogram(out, prefix, "queue_wait", "Sampled tasks' time from submission to start.", m.queue_wait);
  append_histogram(out, prefix, "run_time", "Sampled tasks' time from start to end.", m.run_time);
  append_histogram(out, prefix, "wake_latency", "Parked workers' time from a wake-up call to running again.",
                   m.wake_latency);
  using level = pool_metrics::level_metrics;
  append_by_priority(out, prefix, "tasks_waiting_by_priority", kind::gauge, "Accepted tasks not started yet, per priority.",
                     m, [](const level& l) { return l.waiting; });
  append_by_priority(out, prefix, "tasks_started_by_priority", kind::counter, "Tasks started, per priority.", m,
                     [](const level& l) { return l.started; });
  const std::string full = describe(out, prefix, "queue_wait_by_priority", "_seconds", "histogram",
                                    "Sampled tasks' time from submission to start, per priority.");
  for (unsigned level = 0; level < priority_levels; ++level) {
    append_histogram_samples(out, full, priority_label(level) + ',', m.levels[level].queue_wait);
  }
  return out;
}

}  // namespace tidepool
