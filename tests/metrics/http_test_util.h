// Plain HTTP requests to a /metrics endpoint on 127.0.0.1 for the metrics tests: the bytes of
// the request are sent as given, and the whole response is read (the server closes).
#ifndef JAMBA_TESTS_METRICS_HTTP_TEST_UTIL_H_
#define JAMBA_TESTS_METRICS_HTTP_TEST_UTIL_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace jamba::metrics_test {

// The whole response to `request`, or "" when nothing listens on `port`.
inline std::string HttpExchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  (void)!write(fd, request.data(), request.size());
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  return response;
}

// The body of GET /metrics ("" when the endpoint is down).
inline std::string Scrape(int port) {
  const std::string response =
      HttpExchange(port, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

}  // namespace jamba::metrics_test

#endif  // JAMBA_TESTS_METRICS_HTTP_TEST_UTIL_H_
