// Metrics whose values are read when Prometheus scrapes (pool occupancy, queue length,
// resident memory) rather than updated on every change: a Collectable over a callback, and
// builders for the families it returns.
#ifndef JAMBA_METRICS_SCRAPE_TIME_METRICS_H_
#define JAMBA_METRICS_SCRAPE_TIME_METRICS_H_

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace jamba {

class ScrapeTimeMetrics final : public prometheus::Collectable {
 public:
  using Callback = std::function<std::vector<prometheus::MetricFamily>()>;
  explicit ScrapeTimeMetrics(Callback callback) : callback_(std::move(callback)) {}
  std::vector<prometheus::MetricFamily> Collect() const override { return callback_(); }

 private:
  Callback callback_;
};

using MetricLabels = std::map<std::string, std::string>;

// One gauge (or counter: name ending in _total) family with a sample per label set.
prometheus::MetricFamily GaugeFamily(const std::string& name, const std::string& help,
                                     const std::vector<std::pair<MetricLabels, double>>& samples);
prometheus::MetricFamily CounterFamily(const std::string& name, const std::string& help,
                                       const std::vector<std::pair<MetricLabels, double>>& samples);

}  // namespace jamba

#endif  // JAMBA_METRICS_SCRAPE_TIME_METRICS_H_
