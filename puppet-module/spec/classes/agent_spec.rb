# frozen_string_literal: true

require 'spec_helper'
require 'yaml'

describe 'masif_upgrader::agent' do
  let(:config_path) { '/etc/masif-upgrader/agent.yml' }
  let(:written) { YAML.safe_load(catalogue.resource('File', config_path)[:content]) }

  context 'with only the master given' do
    let(:params) { { 'master_host' => 'masif.example.com:8150' } }

    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_package('masif-agent').with_ensure('installed') }
    it { is_expected.to contain_file(config_path).with(owner: 'root', group: 'root', mode: '0644').that_requires('Package[masif-agent]') }

    it 'writes the documented defaults, with Puppet certificates' do
      expect(written).to eq(
        'interval' => { 'check' => 300, 'report' => 300, 'retry' => 60 },
        'max_failures' => 3,
        'master' => { 'host' => 'masif.example.com:8150', 'cn' => 'masif.example.com' },
        'tls' => { 'discover' => 'puppet' },
        'apt' => { 'path' => '/usr/bin/apt-get', 'options' => [], 'env' => {} },
        'socket' => '/run/masif-upgrader-agent/agent.sock',
        'log' => { 'level' => 'info' },
      )
    end

    it 'puts the service in the puppet group' do
      is_expected.to contain_file('/etc/systemd/system/masif-upgrader-agent.service.d/masif-upgrader-groups.conf')
        .with_content(%r{^SupplementaryGroups=puppet$})
    end

    it 'runs the service and restarts it on changes' do
      is_expected.to contain_service('masif-upgrader-agent.service')
        .with(ensure: 'running', enable: true)
        .that_subscribes_to(["File[#{config_path}]", 'Package[masif-agent]'])
    end
  end

  context 'on a host without a puppet group (Puppet all-in-one packages)' do
    let(:params) { { 'master_host' => 'masif.example.com:8150' } }
    let(:facts) { { 'masif_upgrader_puppet_group' => false } }

    it { is_expected.to contain_file('/etc/systemd/system/masif-upgrader-agent.service.d/masif-upgrader-groups.conf').with_ensure('absent') }
  end

  context 'with Icinga 2 certificates, tuned intervals and a sandboxed apt' do
    let(:params) do
      {
        'master_host' => '192.0.2.10:8150',
        'master_cn' => 'masif.example.com',
        'tls' => { 'discover' => 'icinga2', 'name' => 'agent01.example.com' },
        'check_interval' => 600,
        'report_interval' => 60,
        'retry_interval' => 0,
        'max_failures' => 0,
        'tags' => ['web', 'prod-eu.1'],
        'apt_options' => ['-o', 'DPkg::Lock::Timeout=60'],
        'apt_env' => { 'APT_CONFIG' => '/srv/sandbox/apt.conf' },
        'apt_timeout' => 3600,
        'log_level' => 'debug',
      }
    end

    it 'writes every value' do
      expect(written).to include(
        'interval' => { 'check' => 600, 'report' => 60, 'retry' => 0 },
        'max_failures' => 0,
        'tags' => ['web', 'prod-eu.1'],
        'master' => { 'host' => '192.0.2.10:8150', 'cn' => 'masif.example.com' },
        'tls' => { 'discover' => 'icinga2', 'name' => 'agent01.example.com' },
        'apt' => { 'path' => '/usr/bin/apt-get', 'options' => ['-o', 'DPkg::Lock::Timeout=60'],
                   'env' => { 'APT_CONFIG' => '/srv/sandbox/apt.conf' }, 'timeout' => 3600 },
        'log' => { 'level' => 'debug' },
      )
    end

    it { is_expected.to contain_file('/etc/systemd/system/masif-upgrader-agent.service.d/masif-upgrader-groups.conf').with_ensure('absent') }
  end

  context 'with several masters' do
    let(:params) do
      { 'master_hosts' => ['masif1.example.com:8150', '192.0.2.11:8150', '[2001:db8::1]:8150'],
        'master_cn' => 'masif.example.com' }
    end

    it { is_expected.to compile.with_all_deps }

    it 'writes master.hosts, and no master.host' do
      expect(written['master']).to eq(
        'hosts' => ['masif1.example.com:8150', '192.0.2.11:8150', '[2001:db8::1]:8150'],
        'cn' => 'masif.example.com',
      )
    end
  end

  context 'with a list of one master' do
    let(:params) { { 'master_hosts' => ['masif1.example.com:8150'], 'master_cn' => 'masif1.example.com' } }

    it { expect(written['master']).to eq('hosts' => ['masif1.example.com:8150'], 'cn' => 'masif1.example.com') }
  end

  context 'with explicit certificate files' do
    let(:params) do
      { 'master_host' => 'masif.example.com:8150',
        'tls' => { 'cert' => '/etc/ssl/masif/a.pem', 'key' => '/etc/ssl/masif/a.key', 'ca' => '/etc/ssl/masif/ca.pem' } }
    end

    it { expect(written['tls']).to eq('cert' => '/etc/ssl/masif/a.pem', 'key' => '/etc/ssl/masif/a.key', 'ca' => '/etc/ssl/masif/ca.pem') }
  end

  context 'with values that need quoting' do
    let(:params) do
      { 'master_host' => 'masif.example.com:8150',
        'apt_options' => ['-o', 'Acquire::http::Proxy="http://proxy:3128"', "it's: #not a comment"] }
    end

    it 'keeps them intact' do
      expect(written['apt']['options']).to eq(['-o', 'Acquire::http::Proxy="http://proxy:3128"', "it's: #not a comment"])
    end
  end

  context 'with the daily certificate check' do
    let(:params) do
      { 'master_host' => 'masif.example.com:8150', 'certificate_check' => true,
        'tls' => { 'discover' => 'puppet', 'name' => 'agent01.example.com' } }
    end

    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_package('masif-pki') }

    it 'checks the certificate the agent uses' do
      is_expected.to contain_file('/etc/masif-upgrader/pki-check-agent.conf')
        .with_content(%r{^MASIF_PKI_CHECK_ARGS=--source=puppet --name=agent01.example.com$})
    end

    it { is_expected.to contain_service('masif-pki-check@agent.timer').with(ensure: 'running', enable: true) }
  end

  context 'with the certificate check of a path with a space' do
    let(:params) do
      { 'master_host' => 'masif.example.com:8150', 'certificate_check' => true,
        'tls' => { 'cert' => '/etc/my certs/a.pem', 'key' => '/k', 'ca' => '/c' } }
    end

    it { is_expected.to compile.and_raise_error(%r{white space}) }
  end

  context 'installed from a binary' do
    let(:params) do
      { 'master_host' => 'masif.example.com:8150', 'install' => 'binary',
        'binary_source' => 'puppet:///modules/site/masif-agent' }
    end

    it { is_expected.not_to contain_package('masif-agent') }
    it { is_expected.to contain_file('/usr/local/bin/masif-agent').with(source: 'puppet:///modules/site/masif-agent', mode: '0755') }

    it 'installs the packaged unit, pointed at the copied binary' do
      is_expected.to contain_file('/etc/systemd/system/masif-upgrader-agent.service')
        .with_content(%r{^ExecStart=/usr/local/bin/masif-agent --config /etc/masif-upgrader/agent.yml$})
        .with_content(%r{^KillMode=mixed$})
    end

    it { is_expected.to contain_service('masif-upgrader-agent.service').that_subscribes_to('File[/usr/local/bin/masif-agent]') }
  end

  context 'installed from a binary without a source' do
    let(:params) { { 'master_host' => 'masif.example.com:8150', 'install' => 'binary' } }

    it { is_expected.to compile.and_raise_error(%r{needs binary_source}) }
  end

  context 'into a scratch root' do
    let(:pre_condition) { "class { 'masif_upgrader': root => '/srv/image' }" }
    let(:params) { { 'master_host' => 'masif.example.com:8150', 'install' => 'none' } }

    it { is_expected.to contain_file('/srv/image/etc/masif-upgrader/agent.yml') }
    it { is_expected.not_to contain_service('masif-upgrader-agent.service') }
  end

  [
    ['no master', {}, %r{master_host}],
    ['a master without a port', { 'master_host' => 'masif.example.com' }, %r{master_host}],
    ['both master_host and master_hosts',
     { 'master_host' => 'm1.example.com:8150', 'master_hosts' => ['m2.example.com:8150'], 'master_cn' => 'm' }, %r{not both}],
    ['masters without master_cn', { 'master_hosts' => ['m1.example.com:8150'] }, %r{master_hosts needs master_cn}],
    ['an empty list of masters', { 'master_hosts' => [] }, %r{master_hosts}],
    ['masters as one string', { 'master_hosts' => 'm1.example.com:8150' }, %r{master_hosts}],
    ['a listed master without a port', { 'master_hosts' => ['m1.example.com:8150', 'm2.example.com'] }, %r{master_hosts}],
    ['a master listed twice', { 'master_hosts' => ['m1.example.com:8150', 'M1.example.com:8150'], 'master_cn' => 'm' }, %r{more than once}],
    ['seventeen masters', { 'master_hosts' => (1..17).map { |i| "m#{i}.example.com:8150" }, 'master_cn' => 'm' }, %r{master_hosts}],
    ['a relative apt path', { 'apt_path' => 'apt-get' }, %r{apt_path}],
    ['a negative interval', { 'check_interval' => -1 }, %r{check_interval}],
    ['a zero report interval', { 'report_interval' => 0 }, %r{report_interval}],
    ['too many failures allowed', { 'max_failures' => 1001 }, %r{max_failures}],
    ['a negative failure limit', { 'max_failures' => -1 }, %r{max_failures}],
    ['a failure limit as text', { 'max_failures' => '3' }, %r{max_failures}],
    ['a tag starting with a dash', { 'tags' => ['web', '-x'] }, %r{tags}],
    ['a tag with a space', { 'tags' => ['a b'] }, %r{tags}],
    ['tags as one string', { 'tags' => 'web' }, %r{tags}],
    ['a tag given twice', { 'tags' => ['web', 'db', 'web'] }, %r{more than once}],
    ['too many tags', { 'tags' => (0..32).map { |i| "t#{i}" } }, %r{tags}],
    ['an unknown PKI', { 'tls' => { 'discover' => 'vault' } }, %r{tls}],
    ['an easy-rsa PKI without a directory', { 'tls' => { 'discover' => 'easyrsa:' } }, %r{tls}],
    ['both discovery and files', { 'tls' => { 'discover' => 'puppet', 'cert' => '/a' } }, %r{tls}],
    ['files without a CA', { 'tls' => { 'cert' => '/a', 'key' => '/b' } }, %r{tls}],
    ['a certificate name with a path', { 'tls' => { 'discover' => 'puppet', 'name' => '../../etc/shadow' } }, %r{tls}],
    ['an unknown log level', { 'log_level' => 'verbose' }, %r{log_level}],
    ['a too short apt timeout', { 'apt_timeout' => 5 }, %r{apt_timeout}],
    ['a newline in an option', { 'apt_options' => ["a\nb: c"] }, nil],
    ['a bad environment name', { 'apt_env' => { 'A B' => 'x' } }, %r{apt_env}],
  ].each do |what, bad, message|
    context "with #{what}" do
      let(:params) do
        # The cases about the list of masters give theirs instead of master_host.
        alone = what == 'no master' || bad.key?('master_hosts')
        (alone ? {} : { 'master_host' => 'masif.example.com:8150' }).merge(bad)
      end

      if message
        it { is_expected.to compile.and_raise_error(message) }
      else
        it 'still writes valid YAML holding exactly the value' do
          expect(written['apt']['options']).to eq(bad['apt_options'])
        end
      end
    end
  end

  context 'with the Icinga 2 CheckCommands' do
    let(:params) { { 'master_host' => 'masif.example.com:8150', 'icinga2_commands' => true } }

    it { is_expected.to compile.with_all_deps }
    it do
      is_expected.to contain_file('/etc/icinga2/conf.d/masif-upgrader.conf')
        .with(ensure: 'file', source: 'puppet:///modules/masif_upgrader/icinga2/masif-upgrader.conf',
              owner: 'root', group: 'root', mode: '0644')
    end
  end

  context 'with the Icinga 2 CheckCommands in a global zone' do
    let(:params) do
      { 'master_host' => 'masif.example.com:8150', 'icinga2_commands' => true,
        'icinga2_commands_path' => '/etc/icinga2/zones.d/global-templates/masif-upgrader.conf' }
    end

    it { is_expected.to contain_file('/etc/icinga2/zones.d/global-templates/masif-upgrader.conf') }
    it { is_expected.not_to contain_file('/etc/icinga2/conf.d/masif-upgrader.conf') }
  end

  context 'without the Icinga 2 CheckCommands (the default)' do
    let(:params) { { 'master_host' => 'masif.example.com:8150' } }

    it { is_expected.not_to contain_file('/etc/icinga2/conf.d/masif-upgrader.conf') }
  end

  context 'with a relative icinga2_commands_path' do
    let(:params) { { 'master_host' => 'masif.example.com:8150', 'icinga2_commands' => true, 'icinga2_commands_path' => 'conf.d/x.conf' } }

    it { is_expected.to compile.and_raise_error(%r{icinga2_commands_path}) }
  end
end
