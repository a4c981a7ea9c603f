package testenv

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestS3BucketRoundTrip(t *testing.T) {
	t.Parallel()
	env := S3(t)
	ctx := context.Background()
	_, err := env.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(env.Bucket), Key: aws.String("a/b.txt"), Body: strings.NewReader("hello"),
	})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	out, err := env.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(env.Bucket), Key: aws.String("a/b.txt")})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "hello" {
		t.Fatalf("got %q, want hello", b)
	}
	// The cleanup must remove a non-empty bucket; check it directly.
	if err := deleteBucket(ctx, env.Client, env.Bucket); err != nil {
		t.Fatalf("delete non-empty bucket: %v", err)
	}
	if _, err := env.Client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(env.Bucket)}); err == nil {
		t.Fatalf("bucket %s still exists after delete", env.Bucket)
	}
}
