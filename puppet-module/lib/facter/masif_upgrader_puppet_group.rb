# frozen_string_literal: true

# Whether this host has a `puppet` group. Debian's puppet packages create it and own
# the ssldir files with it; Puppet's all-in-one packages do not. The masif_upgrader
# classes add their services to that group (to read Puppet's key) only where it exists,
# because systemd refuses to start a unit whose SupplementaryGroups= names no group.
require 'etc'

Facter.add(:masif_upgrader_puppet_group) do
  setcode do
    !Etc.getgrnam('puppet').nil?
  rescue ArgumentError
    false
  end
end
