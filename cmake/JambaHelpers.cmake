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

# jamba_add_emulated_variant(<executable>)
# The executable again, linked against the CUDA backend built for the CPU emulator
# (jamba_backends_emu in place of jamba_backends: `--device cuda` runs on the emulated device),
# as ${CMAKE_BINARY_DIR}/cuda-emulator/<executable>. Call it in the directory that defines the
# executable, after its target_link_libraries, so the variant keeps its sources and libraries.
function(jamba_add_emulated_variant target)
  get_target_property(sources ${target} SOURCES)
  get_target_property(libs ${target} LINK_LIBRARIES)
  if(NOT "jamba_backends" IN_LIST libs)
    message(FATAL_ERROR "jamba_add_emulated_variant(${target}): it does not link jamba_backends")
  endif()
  list(TRANSFORM libs REPLACE "^jamba_backends$" "jamba_backends_emu")
  add_executable(${target}-emu ${sources})
  target_link_libraries(${target}-emu PRIVATE ${libs})
  set_target_properties(${target}-emu PROPERTIES OUTPUT_NAME ${target}
                        RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/cuda-emulator)
endfunction()
