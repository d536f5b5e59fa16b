# frozen_string_literal: true

require 'spec_helper'
require 'yaml'

describe 'masif_upgrader::ui' do
  let(:config_path) { '/etc/masif-upgrader/ui.yml' }
  let(:written) { YAML.safe_load(catalogue.resource('File', config_path)[:content]) }
  let(:hash) { '$2y$05$abcdefghijklmnopqrstuu5y0ZbUYVhmG1QmS7zqyqUa3e1Cw0Xb2' }

  context 'with defaults' do
    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_package('masif-ui') }
    it { is_expected.to contain_file(config_path).with(owner: 'root', group: 'masif-ui', mode: '0640') }
    it { is_expected.not_to contain_file('/etc/masif-upgrader/ui.htpasswd') }

    it 'listens on loopback and shares the master database' do
      expect(written).to eq(
        'listen' => '127.0.0.1:8151',
        'db' => { 'url' => 'sqlite:///var/lib/masif-upgrader/masif.db' },
        'auth' => { 'htpasswd' => '/etc/masif-upgrader/ui.htpasswd' },
        'offline_after' => 900,
        'summary_check_interval' => 600,
        'log' => { 'level' => 'info' },
      )
    end
  end

  context 'behind a proxy, with users' do
    let(:params) { { 'users' => { 'admin' => hash }, 'trusted_header' => { 'name' => 'X-Remote-User', 'from' => ['127.0.0.1'] } } }

    it { expect(written['auth']['htpasswd']).to eq('/etc/masif-upgrader/ui.htpasswd') }
    it { is_expected.to contain_file('/etc/masif-upgrader/ui.htpasswd') }
  end

  context 'with users, a proxy and HTTPS' do
    let(:params) do
      { 'users' => { 'admin' => sensitive(hash), 'ops' => hash },
        'trusted_header' => { 'name' => 'X-Remote-User', 'from' => ['127.0.0.1', '::1'] },
        'tls' => { 'cert' => '/etc/ssl/ui.pem', 'key' => '/etc/ssl/ui.key' },
        'listen' => '[::]:8443',
        'offline_after' => 3600,
        'summary_check_interval' => 3600 }
    end

    it 'writes the password file for the service only, and restarts on changes' do
      is_expected.to contain_file('/etc/masif-upgrader/ui.htpasswd').with(owner: 'root', group: 'masif-ui', mode: '0640')
      expect(catalogue.resource('File', '/etc/masif-upgrader/ui.htpasswd')[:content]).to eq("admin:#{hash}\nops:#{hash}\n")
      is_expected.to contain_service('masif-upgrader-ui.service').that_subscribes_to('File[/etc/masif-upgrader/ui.htpasswd]')
    end

    it 'writes every key' do
      expect(written).to include(
        'listen' => '[::]:8443',
        'auth' => { 'htpasswd' => '/etc/masif-upgrader/ui.htpasswd',
                    'trusted_header' => { 'name' => 'X-Remote-User', 'from' => ['127.0.0.1', '::1'] } },
        'tls' => { 'cert' => '/etc/ssl/ui.pem', 'key' => '/etc/ssl/ui.key' },
        'offline_after' => 3600,
        'summary_check_interval' => 3600,
      )
    end
  end

  context 'with the pending summary check off' do
    let(:params) { { 'summary_check_interval' => 0 } }

    it { is_expected.to compile.with_all_deps }
    it { expect(written['summary_check_interval']).to eq(0) }
  end

  context 'with the pending summary check at its bounds' do
    [10, 604_800].each do |seconds|
      context "of #{seconds} seconds" do
        let(:params) { { 'summary_check_interval' => seconds } }

        it { expect(written['summary_check_interval']).to eq(seconds) }
      end
    end
  end

  context 'behind a proxy only' do
    let(:params) { { 'trusted_header' => { 'name' => 'X-Remote-User', 'from' => ['127.0.0.1'] } } }

    it { expect(written['auth']).to eq('trusted_header' => { 'name' => 'X-Remote-User', 'from' => ['127.0.0.1'] }) }
  end

  [
    ['a relative password file', { 'htpasswd' => 'ui.htpasswd' }, %r{htpasswd}],
    ['a plain-text password', { 'users' => { 'admin' => 'secret' } }, %r{users}],
    ['a user name with a colon', { 'users' => { 'a:b' => '$2y$05$x' } }, %r{users}],
    ['a header with a space', { 'trusted_header' => { 'name' => 'X User', 'from' => ['127.0.0.1'] } }, %r{trusted_header}],
    ['offline after less than a minute', { 'offline_after' => 59 }, %r{offline_after}],
    ['offline after more than a year', { 'offline_after' => 31_536_001 }, %r{offline_after}],
    ['offline_after as text', { 'offline_after' => '900' }, %r{offline_after}],
    ['a summary check every 5 seconds', { 'summary_check_interval' => 5 }, %r{summary_check_interval}],
    ['a summary check less often than weekly', { 'summary_check_interval' => 604_801 }, %r{summary_check_interval}],
    ['a negative summary check interval', { 'summary_check_interval' => -1 }, %r{summary_check_interval}],
    ['summary_check_interval as text', { 'summary_check_interval' => '600' }, %r{summary_check_interval}],
    ['a proxy with no address', { 'trusted_header' => { 'name' => 'X-User', 'from' => [] } }, %r{trusted_header}],
  ].each do |what, bad, message|
    context "with #{what}" do
      let(:params) { bad }

      it { is_expected.to compile.and_raise_error(message) }
    end
  end
end
