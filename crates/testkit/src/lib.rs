//! Test support for mqdb: fixtures shared by the black-box tests (the `mqdb`
//! binary on ephemeral ports and a raw MQTT client built on `mqdb-codec` come
//! with the broker issue). Never a dependency of a non-test crate.
