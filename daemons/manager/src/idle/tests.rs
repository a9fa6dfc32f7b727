use super::*;
use crate::config::{parse_duration, ManagerConfig};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z").unwrap().with_timezone(&Utc)
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + chrono::TimeDelta::seconds(seconds)
}

fn slots(v: Value) -> ResourceSlot {
    serde_json::from_value(v).unwrap()
}

fn facts() -> SessionFacts {
    SessionFacts {
        session_type: SessionType::Interactive,
        created_at: t0(),
        last_activity: Some(t0()),
        active_connections: 0,
        idle_timeout: 600,
        max_session_lifetime: 0,
        occupied: slots(json!({"cpu": "1", "mem": "1073741824"})),
    }
}

fn section(toml: &str) -> IdleSection {
    ManagerConfig::from_toml(toml).unwrap().idle
}

#[test]
fn durations_parse_with_units_and_bad_ones_are_explained() {
    assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    for bad in ["", "10x", "-5m", "m", "1e400s"] {
        let err = parse_duration(bad).unwrap_err();
        assert!(err.contains("invalid duration"), "{bad}: {err}");
    }
}

#[test]
fn the_default_runs_only_the_session_lifetime_checker() {
    let config = IdleConfig::from_section(&IdleSection::default()).unwrap();
    assert_eq!(config, IdleConfig::default());
    let reports = check_all(&config, &facts(), &UtilSeries::default(), at(100_000));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].checker, SESSION_LIFETIME);
}

#[test]
fn the_toml_section_enables_and_configures_checkers() {
    // Each threshold is `{average = …}` or nothing.
    let err = ManagerConfig::from_toml("[idle.checkers.utilization]\nresource-thresholds = { cuda_util = {} }\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("average"), "{err}");
    let s = section(
        r#"
[idle]
check-interval = "30s"
enabled = ["network_timeout", "utilization"]
[idle.checkers.network_timeout]
threshold = "20m"
[idle.checkers.utilization]
time-window = "12h"
initial-grace-period = 120
thresholds-check-operator = "or"
resource-thresholds = { cpu_util = { average = 30 }, mem = { average = 25.5 } }
"#,
    );
    let config = IdleConfig::from_section(&s).unwrap();
    assert_eq!(config.check_interval, Duration::from_secs(30));
    assert_eq!(config.network_timeout, Some(Duration::from_secs(1200)));
    let u = config.utilization.unwrap();
    assert_eq!(u.time_window, Duration::from_secs(43_200));
    assert_eq!(u.initial_grace_period, Duration::from_secs(120));
    assert_eq!(u.operator, ThresholdOperator::Or);
    assert_eq!(u.thresholds, BTreeMap::from([("cpu_util".to_string(), 30.0), ("mem".to_string(), 25.5)]));
}

#[test]
fn bad_idle_settings_name_the_key() {
    let cases = [
        ("[idle]\ncheck-interval = \"soon\"\n", "idle.check-interval"),
        ("[idle]\ncheck-interval = 0\n", "idle.check-interval"),
        ("[idle.checkers.network_timeout]\nthreshold = \"10 minutes\"\n", "idle.checkers.network_timeout.threshold"),
        ("[idle.checkers.utilization]\ntime-window = \"-1h\"\n", "idle.checkers.utilization.time-window"),
        (
            "[idle.checkers.utilization]\nthresholds-check-operator = \"xor\"\n",
            "idle.checkers.utilization.thresholds-check-operator",
        ),
        (
            "[idle.checkers.utilization]\nresource-thresholds = { gpu_util = { average = 1 } }\n",
            "idle.checkers.utilization.resource-thresholds.gpu_util",
        ),
        (
            "[idle.checkers.utilization]\nresource-thresholds = { mem = { average = -3 } }\n",
            "idle.checkers.utilization.resource-thresholds.mem.average",
        ),
        ("[idle]\nenabled = [\"network_timeout\", \"gpu\"]\n", "idle.enabled"),
    ];
    for (toml, field) in cases {
        let config = ManagerConfig::from_toml(toml).unwrap();
        let err = config.validate().unwrap_err();
        assert_eq!(err.field, field, "{toml}: {err}");
    }
    // Unknown keys are refused when the file is read.
    for toml in
        ["[idle]\ninterval = \"1m\"\n", "[idle.checkers.network_timeout]\ntimeout = \"1m\"\n", "[idle.checkers.gpu]\n"]
    {
        let err = ManagerConfig::from_toml(toml).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{toml}: {err}");
    }
}

#[test]
fn etcd_settings_in_the_original_shape_replace_the_files() {
    let mut s =
        section("[idle]\nenabled = [\"network_timeout\"]\n[idle.checkers.network_timeout]\nthreshold = \"1h\"\n");
    let checkers = json!({
        "network_timeout": {"threshold": "10m"},
        "utilization": {
            "initial-grace-period": "5m",
            "resource-thresholds": {"cpu_util": {"average": 30}, "mem": {"average": 30}},
            "thresholds-check-operator": "and",
            "time-window": "12h"
        },
        "user_grace_period": {"user_initial_grace_period": "1d"}
    });
    apply_etcd(&mut s, Some("network_timeout, utilization"), Some(checkers), "/bai/x/config/idle").unwrap();
    let config = IdleConfig::from_section(&s).unwrap();
    assert_eq!(config.network_timeout, Some(Duration::from_secs(600)));
    let u = config.utilization.unwrap();
    assert_eq!((u.time_window, u.initial_grace_period), (Duration::from_secs(43_200), Duration::from_secs(300)));
    assert_eq!(u.thresholds.len(), 2);

    let err = apply_etcd(&mut s, None, Some(json!({"utilization": {"time-window": ["12h"]}})), "/bai/x/config/idle")
        .unwrap_err();
    assert_eq!(err.field, "/bai/x/config/idle/checkers/utilization.time-window");
    let err = apply_etcd(&mut s, None, Some(json!({"network_timeout": {"treshold": "1m"}})), "/bai/x/config/idle")
        .unwrap_err();
    assert!(err.reason.contains("treshold"), "{err}");
}

#[test]
fn an_etcd_key_tree_becomes_the_json_object() {
    let mut root = json!({});
    insert_path(&mut root, "utilization/resource-thresholds/cpu_util/average", "30");
    insert_path(&mut root, "utilization/time-window", "12h");
    insert_path(&mut root, "network_timeout/threshold", "600");
    assert_eq!(
        root,
        json!({
            "utilization": {"resource-thresholds": {"cpu_util": {"average": 30.0}}, "time-window": "12h"},
            "network_timeout": {"threshold": 600.0}
        })
    );
    let mut s = IdleSection::default();
    apply_etcd(&mut s, Some("utilization,network_timeout"), Some(root), "etcd").unwrap();
    let config = IdleConfig::from_section(&s).unwrap();
    assert_eq!(config.network_timeout, Some(Duration::from_secs(600)));
    assert_eq!(config.utilization.unwrap().thresholds["cpu_util"], 30.0);
}

#[test]
fn network_timeout_counts_from_the_last_traffic() {
    let f = facts();
    let fresh = check_network_timeout(Duration::from_secs(60), &f, at(100));
    assert_eq!((fresh.remaining, fresh.idle.is_some()), (Some(500.0), false));
    let idle = check_network_timeout(Duration::from_secs(60), &f, at(601));
    assert_eq!(idle.remaining, Some(EXPIRED));
    assert_eq!(idle.reason(), "idle-timeout");
    let why = idle.idle.unwrap();
    assert_eq!(why["idle_checker"], "network_timeout");
    assert_eq!(why["threshold"], 600.0);
    assert_eq!(why["idle_for"], 601.0);

    // Traffic moves the baseline.
    let touched = SessionFacts { last_activity: Some(at(500)), ..f.clone() };
    assert!(check_network_timeout(Duration::from_secs(60), &touched, at(601)).idle.is_none());
    // An open app connection, a batch session, a policy of 0: never idle, nothing to report.
    for exempt in [
        SessionFacts { active_connections: 1, ..f.clone() },
        SessionFacts { session_type: SessionType::Batch, ..f.clone() },
        SessionFacts { idle_timeout: 0, ..f.clone() },
        SessionFacts { last_activity: None, ..f.clone() },
    ] {
        let r = check_network_timeout(Duration::from_secs(60), &exempt, at(100_000));
        assert_eq!((r.remaining, r.idle.is_some()), (None, false), "{exempt:?}");
    }
    // A negative (undefined) policy value takes the configured threshold.
    let undefined = SessionFacts { idle_timeout: -1, ..f };
    assert!(check_network_timeout(Duration::from_secs(60), &undefined, at(61)).idle.is_some());
    assert!(check_network_timeout(Duration::from_secs(60), &undefined, at(59)).idle.is_none());
}

#[test]
fn session_lifetime_counts_from_creation() {
    let f = SessionFacts { max_session_lifetime: 3600, ..facts() };
    let r = check_session_lifetime(&f, at(600));
    assert_eq!((r.remaining, r.idle.is_some(), r.remaining_time_type), (Some(3000.0), false, "expire_after"));
    let r = check_session_lifetime(&f, at(3600));
    assert_eq!(r.remaining, Some(EXPIRED));
    assert_eq!(r.reason(), "idle-session-lifetime");
    assert_eq!(r.idle.unwrap(), json!({"idle_checker": "session_lifetime", "threshold": 3600.0, "age": 3600.0}));
    assert_eq!(check_session_lifetime(&facts(), at(1_000_000)).remaining, None, "0 is unlimited");
}

fn utilization(operator: ThresholdOperator) -> UtilizationConfig {
    UtilizationConfig {
        time_window: Duration::from_secs(3600),
        initial_grace_period: Duration::from_secs(300),
        operator,
        thresholds: BTreeMap::from([("cpu_util".into(), 30.0), ("mem".into(), 30.0), ("cuda_util".into(), 10.0)]),
    }
}

fn sample(cpu: f64, mem: f64) -> BTreeMap<String, f64> {
    BTreeMap::from([("cpu_util".into(), cpu), ("mem".into(), mem)])
}

/// Samples every 15 s from `from` to `to` (seconds).
fn series(from: i64, to: i64, window: Duration, value: impl Fn(i64) -> BTreeMap<String, f64>) -> UtilSeries {
    let mut s = UtilSeries::default();
    let mut t = from;
    while t <= to {
        s.record(at(t), value(t), window);
        t += 15;
    }
    s
}

#[test]
fn utilization_waits_for_the_grace_period_and_a_full_window() {
    let c = utilization(ThresholdOperator::And);
    let f = facts(); // the policy's idle_timeout (600 s) is the window
    let window = utilization_window(&c, &f);
    assert_eq!(window, Duration::from_secs(600));
    let r = check_utilization(&c, &f, &UtilSeries::default(), at(200));
    assert_eq!((r.remaining, r.idle.is_some(), r.remaining_time_type), (Some(700.0), false, "grace_period"));
    // Idle samples, but the window is not full yet.
    let s = series(301, 800, window, |_| sample(1.0, 2.0));
    let r = check_utilization(&c, &f, &s, at(800));
    assert!(r.idle.is_none());
    assert_eq!(r.remaining, Some(100.0));
    assert_eq!(r.extra.unwrap()["resources"]["cpu_util"], json!([1.0, 30.0]));
    // A full window below every threshold: idle.
    let s = series(301, 905, window, |_| sample(1.0, 2.0));
    let r = check_utilization(&c, &f, &s, at(905));
    assert_eq!(r.reason(), "idle-utilization");
    let why = r.idle.unwrap();
    assert_eq!(why["idle_checker"], "utilization");
    assert_eq!(why["resources"]["cpu_util"], json!({"average": 1.0, "threshold": 30.0}));
    assert!(why["resources"].get("cuda_util").is_none(), "the session holds no cuda: {why}");
    assert_eq!(r.remaining, Some(EXPIRED));
    // The policy's 0 turns it off; a negative one takes the configured window.
    assert_eq!(check_utilization(&c, &SessionFacts { idle_timeout: 0, ..f.clone() }, &s, at(905)).remaining, None);
    assert_eq!(utilization_window(&c, &SessionFacts { idle_timeout: -1, ..f }), Duration::from_secs(3600));
}

#[test]
fn utilization_thresholds_combine_with_and_or_or() {
    let f = facts();
    let window = Duration::from_secs(600);
    // CPU busy, memory idle.
    let s = series(301, 905, window, |_| sample(80.0, 2.0));
    assert!(check_utilization(&utilization(ThresholdOperator::And), &f, &s, at(905)).idle.is_none());
    assert!(check_utilization(&utilization(ThresholdOperator::Or), &f, &s, at(905)).idle.is_some());
    // The average decides: busy half the window at 70 % is 35 % on average.
    let s = series(301, 905, window, |t| sample(if t < 600 { 70.0 } else { 0.0 }, 50.0));
    let avg = s.averages()["cpu_util"];
    assert!(avg > 30.0 && avg < 40.0, "{avg}");
    assert!(check_utilization(&utilization(ThresholdOperator::Or), &f, &s, at(905)).idle.is_none());
    // No data for any threshold: nothing to judge.
    let s = series(301, 905, window, |_| BTreeMap::new());
    assert!(check_utilization(&utilization(ThresholdOperator::Or), &f, &s, at(905)).idle.is_none());
}

#[test]
fn a_sessions_utilization_averages_its_kernels_and_measures_memory_against_its_slots() {
    let stat = |cpu: f64, mem: f64| KernelStat {
        at: t0(),
        metrics: BTreeMap::from([("cpu_util".into(), (cpu, 0.0)), ("mem".into(), (99.0, mem))]),
    };
    let (a, b) = (stat(10.0, 256.0 * 1048576.0), stat(30.0, 256.0 * 1048576.0));
    let u = session_utilization(&[Some(&a), Some(&b)], &slots(json!({"cpu": "2", "mem": "1073741824"}))).unwrap();
    assert_eq!(u["cpu_util"], 20.0);
    assert_eq!(u["mem"], 50.0);
    assert_eq!(session_utilization(&[Some(&a), None], &ResourceSlot::default()), None, "a kernel without statistics");
}

#[test]
fn heartbeats_carry_the_kernels_statistics() {
    let state = IdleState::default();
    let kernel = KernelId::new_random();
    state.record_heartbeat(&json!({"kernel_stats": {
        kernel.to_string(): {"cpu_util": {"current": "12.5", "capacity": "100", "pct": "12.50"},
                             "mem": {"current": "1048576", "capacity": null, "pct": "0.00"},
                             "net_rx": {"current": "1", "capacity": null, "pct": "0"}},
        "not-a-kernel": {}
    }}));
    let stat = state.kernel_stat(kernel, state.now()).unwrap();
    assert_eq!(stat.metrics["cpu_util"], (12.5, 12.5));
    assert_eq!(stat.metrics["mem"], (0.0, 1048576.0));
    assert!(!stat.metrics.contains_key("net_rx"));
    assert!(state.kernel_stat(kernel, state.now() + delta(STATS_MAX_AGE * 2)).is_none(), "stale");
}

#[test]
fn the_report_has_the_originals_shape() {
    let config = IdleConfig {
        network_timeout: Some(Duration::from_secs(60)),
        utilization: Some(utilization(ThresholdOperator::And)),
        ..Default::default()
    };
    let f = SessionFacts { max_session_lifetime: 7200, ..facts() };
    let report = report_json(&check_all(&config, &f, &UtilSeries::default(), at(100)));
    assert_eq!(
        report,
        json!({
            "session_lifetime": {"remaining": 7100.0, "remaining_time_type": "expire_after", "extra": null},
            "network_timeout": {"remaining": 500.0, "remaining_time_type": "expire_after", "extra": null},
            "utilization": {"remaining": 800.0, "remaining_time_type": "grace_period", "extra": null},
        })
    );
}

#[tokio::test]
async fn connections_hold_off_the_network_timeout_and_count_as_traffic() {
    tokio::time::pause();
    let state = Arc::new(IdleState::default());
    let session = SessionId::new_random();
    let start = state.now();
    let guard = state.connection(session);
    assert_eq!(state.activity(session).unwrap().connections, 1);
    tokio::time::advance(Duration::from_secs(3600)).await;
    drop(guard);
    let a = state.activity(session).unwrap();
    assert_eq!(a.connections, 0);
    assert!(a.last - start >= chrono::TimeDelta::seconds(3599), "{a:?}");
}

#[tokio::test]
async fn policy_limits_are_kept_for_their_ttl_and_dropped_by_invalidation() {
    use crate::db::entities::keypair_resource_policy as policy;
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

    let db = crate::db::connect("sqlite::memory:").await.unwrap();
    crate::db::migrate(&db).await.unwrap();
    repo::populate_fixture(&db, &serde_json::from_str(crate::local::EXAMPLE_FIXTURE).unwrap()).await.unwrap();
    let user = crate::local::EXAMPLE_USER.0;
    let set_lifetime = |seconds: i32| {
        let db = db.clone();
        async move {
            policy::Entity::update_many()
                .set(policy::ActiveModel { max_session_lifetime: Set(seconds), ..Default::default() })
                .filter(policy::Column::Name.eq("default"))
                .exec(&db)
                .await
                .unwrap();
        }
    };
    set_lifetime(100).await;
    let cache = PolicyLimits::with_ttl(Duration::from_secs(3600));
    assert_eq!(cache.of(&db, user).await.unwrap().1, 100);
    assert_eq!(cache.of(&db, "AKIANOSUCHKEY0000000").await.unwrap(), (0, 0), "no keypair, no limits");
    assert_eq!(cache.len(), 2);
    // A change behind the cache's back is not seen until the entry goes…
    set_lifetime(200).await;
    assert_eq!(cache.of(&db, user).await.unwrap().1, 100);
    cache.invalidate(user);
    assert_eq!(cache.of(&db, user).await.unwrap().1, 200);
    set_lifetime(300).await;
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(cache.of(&db, user).await.unwrap().1, 300);
    // …or expires.
    let short = PolicyLimits::with_ttl(Duration::from_millis(30));
    assert_eq!(short.of(&db, user).await.unwrap().1, 300);
    set_lifetime(400).await;
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(short.of(&db, user).await.unwrap().1, 400);
    // A zero TTL keeps nothing.
    let never = PolicyLimits::with_ttl(Duration::ZERO);
    assert_eq!(never.of(&db, user).await.unwrap().1, 400);
    assert!(never.is_empty());
}
