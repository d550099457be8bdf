// Telemetry against real components: the /metrics endpoint over HTTP on loopback, and the
// gRPC interceptor counting calls made through a real server.
#include "metrics/telemetry.h"

#include <string>

#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rpc/server.h"
#include "tests/metrics/http_test_util.h"

namespace jamba {
namespace {

using ::testing::HasSubstr;

using metrics_test::HttpExchange;
using metrics_test::Scrape;

TEST(TelemetryTest, ServesProcessScrapeTimeAndGrpcMetrics) {
  Telemetry telemetry(BuildInfo{"test_component", "cpu", ""});
  telemetry.set_model_fingerprint("0123456789abcdef");
  double value = 3;
  telemetry.AddScrapeTimeMetrics([&value] {
    return std::vector<prometheus::MetricFamily>{
        GaugeFamily("jamba_test_value", "a value read at scrape time", {{{{"k", "v"}}, value}})};
  });
  absl::StatusOr<int> port = telemetry.Serve("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status();
  ASSERT_GT(*port, 0);

  absl::StatusOr<RunningServer> server = StartServer("127.0.0.1:0", {}, telemetry.Interceptors());
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = client::Client::Connect(absl::StrCat("127.0.0.1:", server->port));
  ASSERT_TRUE(client.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*client)->Health().ok());

  std::string text = Scrape(*port);
  EXPECT_THAT(text, HasSubstr("jamba_build_info{backend=\"cpu\",component=\"test_component\","
                              "model_fingerprint=\"0123456789abcdef\""));
  EXPECT_THAT(text, HasSubstr("jamba_test_value{k=\"v\"} 3"));
  EXPECT_THAT(text, HasSubstr("jamba_grpc_server_handled_total{code=\"OK\","
                              "method=\"/grpc.health.v1.Health/Check\"} 3"));
  EXPECT_THAT(text, HasSubstr("jamba_grpc_server_handling_seconds_count{"
                              "method=\"/grpc.health.v1.Health/Check\"} 3"));
  EXPECT_THAT(text, HasSubstr("jamba_process_resident_memory_bytes{component=\"test_component\"}"));
  EXPECT_GT(ResidentMemoryBytes(), 1 << 20);

  value = 5;  // read again at the next scrape
  EXPECT_THAT(Scrape(*port), HasSubstr("jamba_test_value{k=\"v\"} 5"));
  server->server->Shutdown();
  telemetry.StopServing();
  EXPECT_EQ(Scrape(*port), "");
}

// The /metrics endpoint answers bad requests with an HTTP error and keeps serving.
TEST(TelemetryTest, BadHttpRequestsGetErrorsAndServingGoesOn) {
  Telemetry telemetry(BuildInfo{"test_component", "cpu", ""});
  absl::StatusOr<int> port = telemetry.Serve("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_THAT(HttpExchange(*port, "GET /other HTTP/1.1\r\n\r\n"),
              ::testing::StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(HttpExchange(*port, "POST /metrics HTTP/1.1\r\n\r\n"),
              ::testing::StartsWith("HTTP/1.1 405"));
  EXPECT_THAT(HttpExchange(*port, "garbage\r\n\r\n"), ::testing::StartsWith("HTTP/1.1 400"));
  EXPECT_THAT(HttpExchange(*port, "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a')),
              ::testing::StartsWith("HTTP/1.1 431"));
  const std::string head = HttpExchange(*port, "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_THAT(head, ::testing::StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(head, ::testing::EndsWith("\r\n\r\n"));  // headers only
  const std::string get = HttpExchange(*port, "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_THAT(get,
              ::testing::StartsWith("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(get, HasSubstr("jamba_build_info{"));
  telemetry.StopServing();
}

TEST(TelemetryTest, ABusyPortIsAnErrorNotACrash) {
  Telemetry a(BuildInfo{"a", "cpu", ""});
  absl::StatusOr<int> port = a.Serve("127.0.0.1:0");
  ASSERT_TRUE(port.ok());
  Telemetry b(BuildInfo{"b", "cpu", ""});
  absl::StatusOr<int> clash = b.Serve(absl::StrCat("127.0.0.1:", *port));
  ASSERT_FALSE(clash.ok());
  EXPECT_TRUE(absl::IsUnavailable(clash.status())) << clash.status();
}

}  // namespace
}  // namespace jamba
