# Every host runs an agent that reports to one master, with the host's Puppet certificate.
#   puppet apply --modulepath=... examples/agent.pp
class { 'masif_upgrader::agent':
  master_host => 'masif.example.com:8150',
}
