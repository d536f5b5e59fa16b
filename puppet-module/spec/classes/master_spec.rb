# frozen_string_literal: true

require 'spec_helper'
require 'yaml'

describe 'masif_upgrader::master' do
  let(:config_path) { '/etc/masif-upgrader/master.yml' }
  let(:written) { YAML.safe_load(catalogue.resource('File', config_path)[:content]) }
  let(:dropin) { '/etc/systemd/system/masif-upgrader-master.service.d/masif-upgrader-groups.conf' }

  context 'with defaults' do
    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_package('masif-master') }
    it { is_expected.to contain_file(config_path).with(owner: 'root', group: 'masif-master', mode: '0640') }

    it 'serves Puppet certificates and keeps the database in SQLite' do
      expect(written).to eq(
        'api' => { 'listen' => '0.0.0.0:8150', 'v2' => true, 'max_wait' => 900 },
        'tls' => { 'discover' => 'puppet' },
        'db' => { 'url' => 'sqlite:///var/lib/masif-upgrader/masif.db' },
        'runs' => { 'keep' => 50, 'max_age_days' => 90 },
        'log' => { 'level' => 'info' },
      )
    end

    it { is_expected.to contain_file(dropin).with_content(%r{^SupplementaryGroups=puppet$}) }
    it { is_expected.to contain_service('masif-upgrader-master.service').with(ensure: 'running', enable: true) }
  end

  context 'with MariaDB and a password' do
    let(:params) do
      { 'db_url' => sensitive('mysql://masif:s3cr"t@db.example.com:3306/masif_upgrader'),
        'tls' => { 'cert' => '/etc/ssl/m.pem', 'key' => '/etc/ssl/m.key', 'ca' => '/etc/ssl/ca.pem', 'crl' => '/etc/ssl/crl.pem' } }
    end

    it 'writes the URL, and keeps the content out of reports' do
      expect(catalogue.resource('File', config_path).sensitive_parameters).to include(:content)
      expect(written['db']).to eq('url' => 'mysql://masif:s3cr"t@db.example.com:3306/masif_upgrader')
      expect(written['tls']).to eq('cert' => '/etc/ssl/m.pem', 'key' => '/etc/ssl/m.key', 'ca' => '/etc/ssl/ca.pem', 'crl' => '/etc/ssl/crl.pem')
    end

    it { is_expected.to contain_file(dropin).with_ensure('absent') }
  end

  context 'with protocol v1 only and tuned run results' do
    let(:params) { { 'listen' => '[::]:8150', 'api_v2' => false, 'api_max_wait' => 60, 'runs_keep' => 10, 'runs_max_age_days' => 30 } }

    it 'writes every value' do
      expect(written).to include(
        'api' => { 'listen' => '[::]:8150', 'v2' => false, 'max_wait' => 60 },
        'runs' => { 'keep' => 10, 'max_age_days' => 30 },
      )
    end
  end

  context 'with the daily certificate check, next to an agent that has one too' do
    let(:pre_condition) { "class { 'masif_upgrader::agent': master_host => 'm.example.com:8150', certificate_check => true }" }
    let(:params) do
      { 'certificate_check' => true,
        'tls' => { 'cert' => '/etc/ssl/m.pem', 'key' => '/etc/ssl/m.key', 'ca' => '/etc/ssl/ca.pem', 'crl' => '/etc/ssl/crl.pem' } }
    end

    it { is_expected.to compile.with_all_deps }

    it 'checks the files, readable by the service user' do
      is_expected.to contain_file('/etc/masif-upgrader/pki-check-master.conf').with_content(
        %r{^MASIF_PKI_CHECK_ARGS=--cert=/etc/ssl/m.pem --key=/etc/ssl/m.key --ca=/etc/ssl/ca.pem --crl=/etc/ssl/crl.pem --user=masif-master$},
      )
    end

    it { is_expected.to contain_service('masif-pki-check@master.timer') }
    it { is_expected.to contain_service('masif-pki-check@agent.timer') }
  end

  context 'installed from a binary' do
    let(:params) { { 'install' => 'binary', 'binary_source' => '/srv/build/masif-master' } }

    it { is_expected.to compile.with_all_deps }
    it { is_expected.to contain_file('/usr/lib/sysusers.d/masif-master.conf').with_source('puppet:///modules/masif_upgrader/masif-master.conf') }
    it { is_expected.to contain_exec('masif_upgrader: system users of masif-master').with(command: 'systemd-sysusers masif-master.conf', unless: "grep -q '^masif-master:' /etc/passwd").that_comes_before("File[#{config_path}]") }
    it { is_expected.to contain_file('/etc/systemd/system/masif-upgrader-master.service').with_content(%r{^User=masif-master$}) }
  end

  [
    ['a listen address without a port', { 'listen' => '0.0.0.0' }, %r{listen}],
    ['a host name to listen on', { 'listen' => 'localhost:8150' }, %r{listen}],
    ['an unknown database', { 'db_url' => 'postgres://x@y/z' }, %r{db_url}],
    ['a relative SQLite path', { 'db_url' => 'sqlite://masif.db' }, %r{db_url}],
    ['protocol v2 as text', { 'api_v2' => 'yes' }, %r{api_v2}],
    ['no wait', { 'api_max_wait' => 0 }, %r{api_max_wait}],
    ['a wait over an hour', { 'api_max_wait' => 3601 }, %r{api_max_wait}],
    ['no runs kept', { 'runs_keep' => 0 }, %r{runs_keep}],
    ['runs kept for no day', { 'runs_max_age_days' => 0 }, %r{runs_max_age_days}],
    ['runs kept over a century', { 'runs_max_age_days' => 36_501 }, %r{runs_max_age_days}],
    ['a CRL with discovery', { 'tls' => { 'discover' => 'puppet', 'crl' => '/x' } }, %r{tls}],
  ].each do |what, bad, message|
    context "with #{what}" do
      let(:params) { bad }

      it { is_expected.to compile.and_raise_error(message) }
    end
  end
end
