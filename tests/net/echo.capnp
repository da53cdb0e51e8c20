# Test-only interface for the net layer's RPC tests.
@0xa3c1be82c13ac58b;

interface Echo {
  echo @0 (text :Text) -> (text :Text);
  # Returns its argument.

  hang @1 () -> ();
  # Never returns; lets a test disconnect the peer in the middle of a call.
}
