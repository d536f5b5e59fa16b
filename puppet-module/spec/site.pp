# Empty site manifest for rspec-puppet.
