// Device memory gauges over a real /metrics endpoint: present, with the backend's numbers and
// device label, for a backend with its own memory; absent for the CPU backend.
#include "metrics/device_metrics.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/metrics/http_test_util.h"

namespace jamba {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using metrics_test::Scrape;

// A backend that reports device memory like a GPU; its ops are never called.
class FakeGpuBackend : public Backend {
 public:
  DeviceMemoryInfo memory{3 << 20, 80LL << 30};
  Device device() const override { return Device::kCuda; }
  std::string name() const override { return "cuda:1"; }
  std::optional<DeviceMemoryInfo> MemoryInfo() const override { return memory; }
  absl::StatusOr<std::unique_ptr<DeviceBuffer>> Allocate(DType,
                                                         std::initializer_list<int64_t>) override {
    return absl::UnimplementedError("fake");
  }
  absl::Status Upload(const void*, size_t, const Tensor&) override { return Unused(); }
  absl::Status Download(const Tensor&, void*) override { return Unused(); }
  absl::Status Synchronize() override { return Unused(); }
  void Embed(const Tensor&, const Tensor&, const Tensor&) override { Op(); }
  void RmsNorm(const Tensor&, const Tensor*, float, const Tensor&) override { Op(); }
  void MatMul(const Tensor&, const Tensor&, const Tensor*, const Tensor&) override { Op(); }
  void MatMulInt8(const Tensor&, const Tensor&, const Tensor&, const Tensor*,
                  const Tensor&) override {
    Op();
  }
  void SiluMul(const Tensor&, const Tensor&, const Tensor&) override { Op(); }
  void Add(const Tensor&, const Tensor&) override { Op(); }
  void Zero(const Tensor&) override { Op(); }
  void GatherRows(const Tensor&, const Tensor&, const Tensor&) override { Op(); }
  void ScatterAddScaled(const Tensor&, const Tensor&, const Tensor&, const Tensor&) override {
    Op();
  }
  void MambaConv(const BatchLayout&, const Tensor&, const Tensor&, const Tensor*, const Tensor&,
                 const Tensor&) override {
    Op();
  }
  void MambaScan(const BatchLayout&, const MambaScanArgs&) override { Op(); }
  void Rope(const BatchLayout&, const Tensor&, int64_t, double) override { Op(); }
  void Attention(const BatchLayout&, const AttentionArgs&) override { Op(); }
  void MoeRoute(const Tensor&, int, bool, const Tensor&, const Tensor&) override { Op(); }
  void SampleRows(const Tensor&, absl::Span<const RowSampling>, const Tensor&) override { Op(); }
  void RmsNormGroups(const Tensor&, absl::Span<const int64_t>, absl::Span<const Tensor* const>,
                     float) override {
    Op();
  }
  void MatMulGrouped(const Tensor&, absl::Span<const Tensor>, absl::Span<const Tensor>,
                     const Tensor&, const Tensor&) override {
    Op();
  }
  void MoeGroup(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                const Tensor&) override {
    Op();
  }

 private:
  static void Op() { ADD_FAILURE() << "the metrics called an op"; }
  static absl::Status Unused() {
    Op();
    return absl::UnimplementedError("fake");
  }
};

TEST(DeviceMetricsTest, GpuBackendExportsUsedAndTotal) {
  FakeGpuBackend gpu;
  Telemetry telemetry(BuildInfo{"test_component", "cuda:1", ""});
  AddDeviceMemoryMetrics(telemetry, &gpu);
  absl::StatusOr<int> port = telemetry.Serve("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status();
  std::string text = Scrape(*port);
  EXPECT_THAT(text, HasSubstr("jamba_device_memory_used_bytes{device=\"cuda:1\"} 3145728\n"));
  EXPECT_THAT(text, HasSubstr("jamba_device_memory_total_bytes{device=\"cuda:1\"} 85899345920\n"));
  gpu.memory.used_bytes = 5 << 20;  // read at every scrape
  EXPECT_THAT(Scrape(*port),
              HasSubstr("jamba_device_memory_used_bytes{device=\"cuda:1\"} 5242880\n"));
  telemetry.StopServing();
}

TEST(DeviceMetricsTest, CpuBackendAddsNoDeviceSeries) {
  std::unique_ptr<Backend> cpu = CreateCpuBackend();
  Telemetry telemetry(BuildInfo{"test_component", "cpu", ""});
  AddDeviceMemoryMetrics(telemetry, cpu.get());
  absl::StatusOr<int> port = telemetry.Serve("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status();
  const std::string text = Scrape(*port);
  EXPECT_THAT(text, HasSubstr("jamba_process_resident_memory_bytes"));
  EXPECT_THAT(text, Not(HasSubstr("jamba_device_memory")));
  telemetry.StopServing();
}

}  // namespace
}  // namespace jamba
