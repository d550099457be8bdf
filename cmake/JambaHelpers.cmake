# jamba_add_test(NAME <name> SOURCES <files...> LIBS <targets...> [LABELS <labels...>]
#                [PREFIX <ctest name prefix>] [FILTER <gtest filter>])
# Builds a GoogleTest executable and registers each of its tests with CTest (those FILTER
# selects, named PREFIX + suite.test). Tests find the committed fixtures through the
# JAMBA_TEST_DATA_DIR definition.
function(jamba_add_test)
  cmake_parse_arguments(ARG "" "NAME;PREFIX;FILTER" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_definitions(${ARG_NAME} PRIVATE
    JAMBA_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures"
    JAMBA_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    JAMBA_BINARY_DIR="${PROJECT_BINARY_DIR}")
  set(labels ${ARG_LABELS})
  if(NOT labels)
    set(labels unit)
  endif()
  set(discover_args)
  if(ARG_PREFIX)
    list(APPEND discover_args TEST_PREFIX ${ARG_PREFIX})
  endif()
  if(ARG_FILTER)
    list(APPEND discover_args TEST_FILTER ${ARG_FILTER})
  endif()
  gtest_discover_tests(${ARG_NAME} DISCOVERY_TIMEOUT 60 ${discover_args}
                       PROPERTIES LABELS "${labels}")
endfunction()
