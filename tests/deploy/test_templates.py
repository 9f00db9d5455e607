"""The deploy/ templates grant what the ssm:// transport needs and nothing wider, and configure
the API so that it starts. (cfn-lint checks their syntax and types in `make check`.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from server.lambda_app import LAMBDA_AUTH_MODES
from server.settings import Settings
from tests.support.dockerfile import stages
from transport.ssm import open_ssm

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TEMPLATES = sorted(DEPLOY.glob("*.yaml"))
PREFIX = "slurm-graphql"
# What CloudFormation would substitute, to read the generated values as the server will.
SUBSTITUTIONS = {
    "ClusterName": "hpc",
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "OutputBucket": "out-bucket",
    # Parameters the deployer must give (and the defaults of the others).
    "CognitoUserPoolId": "eu-west-1_AbCdEf123",
    "UserClaim": "username",
    "AdminGroup": "",
    "JwtIssuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123",
    "JwtAudience": "1a2b3c4d5e",
    "JwtUserClaim": "username",
    "JwtAdminGroup": "",
    "MinUid": "1000",
    "LoadBalancer.DNSName": "hpc-Load-1A2B3C.eu-west-1.elb.amazonaws.com",
    "ExtraHostNames": "",
    "RedisUrl": "",
}


def load(path: Path) -> dict[str, Any]:
    template, problems = decode(str(path))
    assert template is not None and not problems, problems
    return dict(template)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def api_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements granted to the API: the Lambda function's or the ECS task role's."""
    for function in resources(template, "AWS::Serverless::Function").values():
        return [s for p in function["Properties"]["Policies"] for s in p["Statement"]]
    role = template["Resources"]["TaskRole"]["Properties"]
    return [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]


def api_environment(template: dict[str, Any]) -> dict[str, Any]:
    for function in resources(template, "AWS::Serverless::Function").values():
        return dict(function["Properties"]["Environment"]["Variables"])
    [container] = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    return {pair["Name"]: pair["Value"] for pair in container["Environment"]}


def substitute(value: Any, **given: str) -> str:
    """`value` as CloudFormation would make it, with the `given` parameters over the defaults."""
    values = {**SUBSTITUTIONS, **given}
    if isinstance(value, dict) and "Ref" in value:
        return values[value["Ref"]]
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_there_is_a_template_for_each_deployment() -> None:
    """One for Lambda behind an HTTP API, one for ECS Fargate behind an ALB."""
    assert [t.name for t in TEMPLATES] == ["ecs.yaml", "lambda.yaml"]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_send_command_reaches_only_the_head_node_and_the_shell_document(path: Path) -> None:
    """SendCommand is allowed on instances tagged as this cluster's head node, and on the
    AWS-RunShellScript document; nothing else is granted on a named resource family."""
    statements = api_statements(load(path))
    assert all(s["Effect"] == "Allow" for s in statements)
    send = [s for s in statements if "ssm:SendCommand" in actions(s)]
    assert len(send) == 2 and all(actions(s) == ["ssm:SendCommand"] for s in send)
    instance, document = sorted(send, key=lambda s: substitute(s["Resource"]))
    assert substitute(instance["Resource"]) == "arn:aws:ec2:eu-west-1:123456789012:instance/*"
    assert instance["Condition"] == {
        "StringEquals": {
            "aws:ResourceTag/parallelcluster:node-type": "HeadNode",
            "aws:ResourceTag/parallelcluster:cluster-name": {"Ref": "ClusterName"},
        }
    }
    assert substitute(document["Resource"]) == "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript"
    assert "Condition" not in document


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_only_unscopable_actions_use_a_wildcard(path: Path) -> None:
    """`Resource: "*"` only for the actions AWS offers no resource-level form of; S3 reads are
    limited to the output prefix; no service-wide action (ssm:*, s3:*) is granted."""
    statements = api_statements(load(path))
    granted = {a for s in statements for a in actions(s)}
    assert granted == {
        "ssm:SendCommand",
        "ssm:GetCommandInvocation",
        "ssm:CancelCommand",
        "ec2:DescribeInstances",
        "s3:GetObject",
    }
    for statement in statements:
        if statement["Resource"] == "*":
            assert set(actions(statement)) <= {
                "ssm:GetCommandInvocation",
                "ssm:CancelCommand",
                "ec2:DescribeInstances",
            }
    [read] = [s for s in statements if actions(s) == ["s3:GetObject"]]
    assert read["Resource"] == {"Fn::Sub": f"${{OutputBucket.Arn}}/{PREFIX}/*"}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_the_output_bucket_is_private_encrypted_and_expires(path: Path) -> None:
    """Encryption at rest, all four public-access blocks, ACLs off, TLS only, and a lifecycle
    rule that deletes output after OutputRetentionDays."""
    template = load(path)
    bucket = template["Resources"]["OutputBucket"]["Properties"]
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    [expiry] = bucket["LifecycleConfiguration"]["Rules"]
    assert expiry["Status"] == "Enabled"
    assert expiry["ExpirationInDays"] == {"Ref": "OutputRetentionDays"}
    [deny] = template["Resources"]["OutputBucketPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_the_head_node_policy_writes_only_the_output_prefix(path: Path) -> None:
    """The managed policy for the head node's role puts objects under the prefix the API reads,
    and is an output, to be added to the cluster's AdditionalIamPolicies."""
    template = load(path)
    policy = template["Resources"]["HeadNodeOutputPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    [write] = [s for s in statements if "s3:PutObject" in actions(s)]
    assert set(actions(write)) == {"s3:PutObject", "s3:PutObjectAcl"}
    assert write["Resource"] == {"Fn::Sub": f"${{OutputBucket.Arn}}/{PREFIX}/*"}
    others = [s for s in statements if s is not write]
    assert [actions(s) for s in others] == [["s3:GetEncryptionConfiguration"]]
    assert template["Outputs"]["HeadNodePolicyArn"]["Value"] == {"Ref": "HeadNodeOutputPolicy"}


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
async def test_the_api_configuration_starts_the_server(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment a template gives the API is read by Settings, and its cluster URL is one
    the ssm:// transport opens (with the bucket and prefix the policies name)."""
    environment = {k: substitute(v) for k, v in api_environment(load(path)).items()}
    settings = Settings.from_environ(environment)
    assert settings.auth_mode == ("apigateway" if path.name == "lambda.yaml" else "jwt")
    assert settings.min_uid == 1000
    [(name, url)] = settings.clusters
    assert name == "hpc"
    # Placeholder credentials: opening the transport makes no AWS call, it only checks them.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "placeholder")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "placeholder")
    transport = open_ssm(url)
    try:
        assert (transport.bucket, transport.prefix) == ("out-bucket", PREFIX)
        assert (transport.region, transport.url) == ("eu-west-1", "ssm://?cluster=hpc")
        if path.name == "lambda.yaml":  # the transport gives up before the function does
            assert transport.timeout < template_timeout(path) < 30  # API Gateway's limit
    finally:
        await transport.aclose()


def template_timeout(path: Path) -> int:
    [function] = resources(load(path), "AWS::Serverless::Function").values()
    timeout: int = function["Properties"]["Timeout"]
    return timeout


def test_the_lambda_template_runs_the_handler_behind_cognito() -> None:
    """The function runs server.lambda_handler.handler with metrics off and trusts only API
    Gateway's claims; the Cognito JWT authorizer is always there (the pool is a required
    parameter) and guards every route but /healthz."""
    template = load(DEPLOY / "lambda.yaml")
    [function] = resources(template, "AWS::Serverless::Function").values()
    assert function["Properties"]["Handler"] == "server.lambda_handler.handler"
    environment = api_environment(template)
    assert environment["SLURM_GRAPHQL_METRICS"] == "false"
    assert environment["SLURM_GRAPHQL_AUTH"] in LAMBDA_AUTH_MODES
    assert environment["SLURM_GRAPHQL_AUTH"] == "apigateway"
    for required in ("CognitoUserPoolId", "CognitoAppClientIds"):
        assert "Default" not in template["Parameters"][required]
    authorizer = template["Resources"]["JwtAuthorizer"]
    assert "Condition" not in authorizer
    assert authorizer["Properties"]["AuthorizerType"] == "JWT"
    routes = resources(template, "AWS::ApiGatewayV2::Route")
    assert routes["ProxyRoute"]["Properties"]["AuthorizationType"] == "JWT"
    assert routes["ProxyRoute"]["Properties"]["AuthorizerId"] == {"Ref": "JwtAuthorizer"}
    assert routes["HealthRoute"]["Properties"]["RouteKey"] == "GET /healthz"
    assert routes["HealthRoute"]["Properties"]["AuthorizationType"] == "NONE"


def test_the_ecs_template_verifies_jwts() -> None:
    """The container verifies bearer tokens itself (the ALB passes them through): the issuer
    and audience are required parameters, so the service never starts anonymous."""
    template = load(DEPLOY / "ecs.yaml")
    environment = api_environment(template)
    assert environment["SLURM_GRAPHQL_AUTH"] == "jwt"
    assert environment["SLURM_GRAPHQL_JWT_ISSUER"] == {"Ref": "JwtIssuer"}
    assert environment["SLURM_GRAPHQL_JWT_AUDIENCE"] == {"Ref": "JwtAudience"}
    for required in ("JwtIssuer", "JwtAudience"):
        assert "Default" not in template["Parameters"][required]


def test_the_ecs_template_answers_the_names_browsers_use() -> None:
    """The load balancer's name, and any extra names, are the allowed hosts: other Host names get
    421, and GraphiQL's WebSocket from a page on them is accepted (server/origins.py)."""
    template = load(DEPLOY / "ecs.yaml")
    value = api_environment(template)["SLURM_GRAPHQL_ALLOWED_HOSTS"]
    for extra, hosts in [
        ("", ("hpc-load-1a2b3c.eu-west-1.elb.amazonaws.com",)),
        (
            "hpc-api.example.org",
            ("hpc-load-1a2b3c.eu-west-1.elb.amazonaws.com", "hpc-api.example.org"),
        ),
    ]:
        environ = {"SLURM_GRAPHQL_ALLOWED_HOSTS": substitute(value, ExtraHostNames=extra)}
        assert Settings.from_environ(environ).allowed_hosts == hosts


def test_the_ecs_template_matches_the_image() -> None:
    """The task listens where the image does, checks health as its HEALTHCHECK does, and the
    ALB keeps idle connections (WebSockets) for less time than the server does."""
    template = load(DEPLOY / "ecs.yaml")
    image = stages(Path(__file__).resolve().parents[2] / "Dockerfile")[-1]
    port = int(image.env["SLURM_GRAPHQL_PORT"])
    [container] = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert [m["ContainerPort"] for m in container["PortMappings"]] == [port]
    assert template["Resources"]["TargetGroup"]["Properties"]["Port"] == port
    assert container["HealthCheck"]["Command"] == ["CMD", *image.healthcheck]
    attributes = template["Resources"]["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    idle = int(next(a["Value"] for a in attributes if a["Key"] == "idle_timeout.timeout_seconds"))
    assert idle < int(image.env["SLURM_GRAPHQL_KEEP_ALIVE"])
    rule = template["Resources"]["HideMetrics"]["Properties"]
    assert rule["Conditions"][0]["PathPatternConfig"]["Values"] == ["/metrics"]


def test_both_templates_define_the_bucket_and_head_node_policy_alike() -> None:
    """Each template stands alone (one deploy command), so the shared parts must not drift."""
    ecs, lam = load(DEPLOY / "ecs.yaml"), load(DEPLOY / "lambda.yaml")
    for name in ("OutputBucket", "OutputBucketPolicy", "HeadNodeOutputPolicy"):
        assert ecs["Resources"][name] == lam["Resources"][name]
    assert api_statements(ecs) == api_statements(lam)


def test_the_ecs_template_shares_state_through_a_private_tls_cache() -> None:
    """The tasks share through an ElastiCache Serverless (Valkey) cache in their own subnets,
    reachable from them only, whose one enabled user has a generated password and rights on
    the service's keys only; the URL reaches the task as a secret its execution role alone
    reads, in the form Settings accepts; autoscaling tracks CPU from DesiredCount (2) up."""
    template = load(DEPLOY / "ecs.yaml")
    parameters = template["Parameters"]
    assert parameters["DesiredCount"]["Default"] == 2
    assert parameters["SharedCache"]["Default"] == "valkey"
    [cache] = resources(template, "AWS::ElastiCache::ServerlessCache").values()
    assert cache["Properties"]["Engine"] == "valkey"  # Serverless: TLS only
    assert cache["Properties"]["SubnetIds"] == {"Ref": "ServiceSubnetIds"}
    [ingress] = template["Resources"]["CacheSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress["SourceSecurityGroupId"] == {"Ref": "ServiceSecurityGroup"}
    assert ingress["FromPort"] == ingress["ToPort"] == 6379
    users = resources(template, "AWS::ElastiCache::User")
    enabled = [
        u["Properties"] for u in users.values() if u["Properties"]["AccessString"][:3] == "on "
    ]
    [user] = enabled
    assert user["AuthenticationMode"]["Type"] == "password"
    assert " ~slurm-graphql:* " in user["AccessString"] and "-@dangerous" in user["AccessString"]
    default = [u for u in users.values() if u["Properties"]["UserName"] == "default"]
    assert default[0]["Properties"]["AccessString"].startswith("off ")
    url = template["Resources"]["CacheUrl"]["Properties"]["SecretString"]["Fn::Sub"]
    filled = url.replace("{{resolve:secretsmanager:${CachePassword}:SecretString:password}}", "pw")
    filled = filled.replace("${Cache.Endpoint.Address}", "c.serverless.euw1.cache.amazonaws.com")
    filled = filled.replace("${Cache.Endpoint.Port}", "6379")
    assert Settings.from_environ({"SLURM_GRAPHQL_REDIS_URL": filled}).redis_url == filled
    assert filled.startswith("rediss://")
    [container] = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    [secret] = container["Secrets"]["Fn::If"][1]
    assert secret == {"Name": "SLURM_GRAPHQL_REDIS_URL", "ValueFrom": {"Ref": "CacheUrl"}}
    execution = template["Resources"]["ExecutionRole"]["Properties"]["Policies"]["Fn::If"][1]
    [statement] = execution[0]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == {"Ref": "CacheUrl"}
    [target] = resources(template, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert target["Properties"]["MinCapacity"] == {"Ref": "DesiredCount"}
    [policy] = resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    assert policy["Properties"]["PolicyType"] == "TargetTrackingScaling"


def test_the_lambda_template_may_join_a_vpc_and_a_cache() -> None:
    """Optional VPC settings and Redis URL (hidden from the console): unset, the function runs
    outside any VPC and each container alone."""
    template = load(DEPLOY / "lambda.yaml")
    parameters = template["Parameters"]
    assert parameters["RedisUrl"]["NoEcho"] is True and parameters["RedisUrl"]["Default"] == ""
    assert Settings.from_environ({"SLURM_GRAPHQL_REDIS_URL": ""}).redis_url is None
    [function] = resources(template, "AWS::Serverless::Function").values()
    assert function["Properties"]["Environment"]["Variables"]["SLURM_GRAPHQL_REDIS_URL"] == {
        "Ref": "RedisUrl"
    }
    condition, in_vpc, outside = function["Properties"]["VpcConfig"]["Fn::If"]
    assert condition == "InVpc" and outside == {"Ref": "AWS::NoValue"}
    assert in_vpc["SubnetIds"] == {"Ref": "VpcSubnetIds"}
