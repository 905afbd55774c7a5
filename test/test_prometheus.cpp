// to_prometheus: the text exposition format's rules, checked line by line.

#include "tidepool/prometheus.hpp"

#include <gtest/gtest.h>

#include <map>        // for std::map
#include <set>        // for std::set
#include <sstream>    // for std::istringstream
#include <stdexcept>  // for std::invalid_argument
#include <string>     // for std::string
#include <utility>    // for std::pair
#include <vector>     // for std::vector

#include "tidepool/pool.hpp"

namespace {

struct histogram_samples {
  std::vector<std::pair<std::string, double>> buckets;  // (le, cumulative count) in text order
  double sum = -1;
  double count = -1;
};

struct parsed {
  std::map<std::string, std::string> type;  // metric -> counter/gauge/histogram
  std::set<std::string> help;
  std::map<std::string, double> value;
  std::map<std::string, histogram_samples> histograms;
};

// The histogram a sample line belongs to ("x_bucket", "x_sum", "x_count" → "x"), if it is one.
std::string histogram_of(const parsed& p, const std::string& sample_name, std::string& part) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s(suffix);
    if (sample_name.size() > s.size() && sample_name.ends_with(s)) {
      const std::string base = sample_name.substr(0, sample_name.size() - s.size());
      const auto it = p.type.find(base);
      if (it != p.type.end() && it->second == "histogram") {
        part = s;
        return base;
      }
    }
  }
  return {};
}

// [a-zA-Z_:][a-zA-Z0-9_:]*, written out (std::regex draws false -Wmaybe-uninitialized
// warnings from g++ 12 in the sanitizer build).
bool valid_name(const std::string& name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Parses the exposition, failing the test on any line that breaks the format's rules.
parsed parse(const std::string& text) {
  parsed p;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    EXPECT_FALSE(line.empty()) << "no blank lines";
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string rest = line.substr(7);
      const std::string name = rest.substr(0, rest.find(' '));
      EXPECT_TRUE(valid_name(name)) << line;
      EXPECT_TRUE(p.help.insert(name).second) << "one HELP per metric: " << line;
    } else if (line.rfind("# TYPE ", 0) == 0) {
      const std::string rest = line.substr(7);
      const std::string name = rest.substr(0, rest.find(' '));
      const std::string type = rest.substr(rest.find(' ') + 1);
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      EXPECT_TRUE(p.help.contains(name)) << "HELP before TYPE: " << line;
      EXPECT_TRUE(p.type.emplace(name, type).second) << "one TYPE per metric: " << line;
    } else {
      const std::size_t name_end = line.find_first_of("{ ");
      const std::string name = line.substr(0, name_end);
      std::string labels;
      if (line[name_end] == '{') labels = line.substr(name_end + 1, line.find('}') - name_end - 1);
      EXPECT_TRUE(valid_name(name)) << line;
      std::size_t used = 0;
      const std::string number = line.substr(line.rfind(' ') + 1);
      const double v = std::stod(number, &used);
      EXPECT_EQ(used, number.size()) << "a plain number: " << line;
      std::string part;
      const std::string histogram = histogram_of(p, name, part);
      if (histogram.empty()) {
        EXPECT_TRUE(p.type.contains(name)) << "TYPE before the sample: " << line;
        // A labelled family: each member under name{labels}, and the family under its name
        // with the sum of its members.
        if (labels.empty()) {
          p.value[name] = v;
        } else {
          p.value[name + '{' + labels + '}'] = v;
          p.value[name] += v;
        }
      } else if (part == "_bucket") {
        // le last; what comes before it names one member of a labelled family.
        const std::size_t le = labels.rfind("le=\"");
        EXPECT_TRUE(le != std::string::npos && labels.ends_with("\"")) << line;
        const std::string member = le == 0 ? histogram : histogram + '{' + labels.substr(0, le - 1) + '}';
        p.histograms[member].buckets.emplace_back(labels.substr(le + 4, labels.size() - le - 5), v);
      } else {
        const std::string member = labels.empty() ? histogram : histogram + '{' + labels + '}';
        (part == "_sum" ? p.histograms[member].sum : p.histograms[member].count) = v;
      }
    }
  }
  return p;
}

TEST(Prometheus, ExpositionFollowsTheTextFormatAndCarriesTheValues) {
  tidepool::pool_metrics m;
  m.submitted = 10;
  m.succeeded = 6;
  m.failed = 2;
  m.cancelled = 1;
  m.waiting = 0;
  m.running = 1;
  m.dropped = 3;
  m.steals = 42;
  const parsed p = parse(tidepool::to_prometheus(m, "app_pool"));
  EXPECT_EQ(p.value.at("app_pool_tasks_submitted_total"), 10);
  EXPECT_EQ(p.value.at("app_pool_tasks_succeeded_total"), 6);
  EXPECT_EQ(p.value.at("app_pool_tasks_failed_total"), 2);
  EXPECT_EQ(p.value.at("app_pool_tasks_cancelled_total"), 1);
  EXPECT_EQ(p.value.at("app_pool_tasks_dropped_total"), 3);
  EXPECT_EQ(p.value.at("app_pool_tasks_running"), 1);
  EXPECT_EQ(p.value.at("app_pool_steals_total"), 42);
  for (const auto& [name, type] : p.type) {
    EXPECT_EQ(type == "counter", name.ends_with("_total")) << name << " is a " << type;
    if (type != "histogram") {
      EXPECT_TRUE(p.value.contains(name)) << name << " has no sample";
    }
  }
}

// Buckets cumulative with rising bounds, +Inf last and equal to _count, _sum present.
void expect_well_formed(const parsed& p, const std::string& name) {
  ASSERT_TRUE(p.histograms.contains(name)) << name;
  const histogram_samples& h = p.histograms.at(name);
  ASSERT_FALSE(h.buckets.empty());
  EXPECT_EQ(h.buckets.back().first, "+Inf");
  for (std::size_t i = 1; i < h.buckets.size(); ++i) {
    EXPECT_GE(h.buckets[i].second, h.buckets[i - 1].second) << name << " buckets are cumulative";
    if (i + 1 < h.buckets.size()) {
      EXPECT_GT(std::stod(h.buckets[i].first), std::stod(h.buckets[i - 1].first)) << name << " bounds rise";
    }
  }
  EXPECT_EQ(h.count, h.buckets.back().second) << name << "_count equals the +Inf bucket";
  EXPECT_GE(h.sum, 0) << name << "_sum is present";
}

TEST(Prometheus, HistogramsAreCumulativeInSecondsAndEndWithInf) {
  tidepool::pool_metrics m;
  m.queue_wait.record(100);            // ≤ 128 ns
  m.queue_wait.record(3'000);          // ≤ 4.096 µs
  m.queue_wait.record(3'000);
  m.run_time.record(2'000'000'000);    // 2 s
  m.run_time.record(UINT64_C(1) << 40);  // beyond the last bound: only in +Inf
  const parsed p = parse(tidepool::to_prometheus(m, "app"));
  expect_well_formed(p, "app_queue_wait_seconds");
  expect_well_formed(p, "app_run_time_seconds");
  const histogram_samples& wait = p.histograms.at("app_queue_wait_seconds");
  EXPECT_EQ(wait.buckets.front(), (std::pair<std::string, double>{"1.28e-07", 1}));
  EXPECT_EQ(wait.count, 3);
  EXPECT_DOUBLE_EQ(wait.sum, 6.1e-06);
  const histogram_samples& run = p.histograms.at("app_run_time_seconds");
  EXPECT_EQ(run.buckets[run.buckets.size() - 2].second, 1) << "2^40 ns is above the last finite bound";
  EXPECT_EQ(run.count, 2);
}

TEST(Prometheus, PerPriorityFiguresAreFamiliesWithOneMemberPerLevel) {
  tidepool::pool_metrics m;
  m.levels[static_cast<int>(tidepool::priority::high)].waiting = 3;
  m.levels[static_cast<int>(tidepool::priority::low)].started = 5;
  m.levels[static_cast<int>(tidepool::priority::high)].queue_wait.record(3'000);
  const parsed p = parse(tidepool::to_prometheus(m, "app"));
  EXPECT_EQ(p.value.at("app_tasks_waiting_by_priority{priority=\"high\"}"), 3);
  EXPECT_EQ(p.value.at("app_tasks_waiting_by_priority{priority=\"low\"}"), 0);
  EXPECT_EQ(p.value.at("app_tasks_started_by_priority_total{priority=\"low\"}"), 5);
  for (const char* level : {"low", "normal", "high"}) {
    expect_well_formed(p, std::string("app_queue_wait_by_priority_seconds{priority=\"") + level + "\"}");
  }
  EXPECT_EQ(p.histograms.at("app_queue_wait_by_priority_seconds{priority=\"high\"}").count, 1);
  EXPECT_EQ(p.histograms.at("app_queue_wait_by_priority_seconds{priority=\"normal\"}").count, 0);
}

TEST(Prometheus, LiveMetricsOfAPoolExpose) {
  tidepool::pool_options every_task_timed;
  every_task_timed.latency_sample_every = 1;
  tidepool::pool p(every_task_timed);
  p.submit([] {}).get();
  p.stop_and_wait();
  const parsed out = parse(tidepool::to_prometheus(p.metrics(), "tidepool"));
  EXPECT_EQ(out.value.at("tidepool_tasks_succeeded_total"), 1);
  EXPECT_GE(out.value.at("tidepool_retired_segments_bound"), out.value.at("tidepool_retired_segments"));
  expect_well_formed(out, "tidepool_queue_wait_seconds");
  expect_well_formed(out, "tidepool_run_time_seconds");
  EXPECT_EQ(out.histograms.at("tidepool_run_time_seconds").count, 1) << "every task is timed";
}

TEST(Prometheus, InvalidPrefixIsRejected) {
  const tidepool::pool_metrics m;
  EXPECT_THROW(static_cast<void>(tidepool::to_prometheus(m, "")), std::invalid_argument);
  EXPECT_THROW(static_cast<void>(tidepool::to_prometheus(m, "9lives")), std::invalid_argument);
  EXPECT_THROW(static_cast<void>(tidepool::to_prometheus(m, "has space")), std::invalid_argument);
  EXPECT_NO_THROW(static_cast<void>(tidepool::to_prometheus(m, "ns:sub_system")));
}

}  // namespace
